"""openpi's LIBERO example observation, both ways: what its client (openpi examples/libero/main.py) sends, so that
`lara eval libero --policy ws://HOST:PORT --obs-format openpi-libero` scores any openpi-protocol server (openpi's
`pi05_libero`, the LARA release's pi0.5, `lara serve`) exactly as that client would, and the names `lara serve`
reads it by.

    policy = OpenpiLiberoPolicy("gpu-box", 8000)       # a lara.policy.Policy
    policy.reset("pick up the cream cheese and place it in the basket")
    chunk = policy.act(obs)                             # obs in lara.policy keys (images upright) -> float32 [T, 7]

The element it sends, key for key and dtype for dtype as openpi's client builds it:

    observation/image        uint8 [224, 224, 3]   agentview camera, upright (LIBERO renders it upside down: rotated
                                                   180 degrees), resized with pad to 224
    observation/wrist_image  uint8 [224, 224, 3]   eye-in-hand camera, the same
    observation/state        float64 [8]           end-effector position (3), axis-angle (3), gripper qpos (2)
    prompt                   str                   the task's language

Resize with pad (tf.image.resize_with_pad as openpi reimplements it with PIL): the image is scaled by one factor so
that it fits the square (sizes truncated to integers, PIL's bilinear filter), pasted centred on black; a square image
is only resized, and an image already at the size is sent as it is. Nothing else goes with it: no `reset` flag (a
`lara serve` policy is reset when the prompt changes, as for openpi's client), no `instruction`.

Needs numpy, PIL (for the resize) and the client's websockets; not the Python 3.8 copy-and-run files (`client.py`,
`wire.py`) a robot PC takes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lara.serving.client import PolicyClient

OBS_FORMAT = "openpi-libero"  # `lara eval libero --obs-format`
IMAGE_SIZE = 224  # the side openpi's LIBERO client resizes both cameras to (its `resize_size`)
RENDER_SIZE = 256  # the side it renders them at (its LIBERO_ENV_RESOLUTION, that of LIBERO's training data)
IMAGES = {"observation/image": "agentview_rgb", "observation/wrist_image": "eye_in_hand_rgb"}  # openpi key -> ours
STATE = "observation/state"
STATE_PARTS = (("ee_pos", 3), ("ee_ori", 3), ("gripper_qpos", 2))  # the 8-D state, in order: our key, width
PROMPT = "prompt"


def resize_with_pad(image: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 (size, size, 3): scaled by max(H, W) / size (sides truncated), bilinear, centred
    on black; returned unchanged when already size x size."""
    from PIL import Image

    height, width = image.shape[:2]
    if (height, width) == (size, size):
        return image
    ratio = max(width / size, height / size)
    scaled_h, scaled_w = int(height / ratio), int(width / ratio)
    scaled = Image.fromarray(image).resize((scaled_w, scaled_h), resample=Image.BILINEAR)
    canvas = Image.new(scaled.mode, (size, size), 0)
    canvas.paste(scaled, (max(0, int((size - scaled_w) / 2)), max(0, int((size - scaled_h) / 2))))
    return np.asarray(canvas)


def openpi_libero_element(obs: dict[str, Any], prompt: str, size: int = IMAGE_SIZE) -> dict[str, Any]:
    """A `lara.policy` observation (images already upright) as openpi's LIBERO client's element."""
    missing = [key for key in (*IMAGES.values(), *(key for key, _ in STATE_PARTS)) if key not in obs]
    if missing:
        raise ValueError(f"openpi's LIBERO element needs both cameras and the robot state; the observation lacks "
                         f"{missing}")
    element: dict[str, Any] = {theirs: resize_with_pad(np.ascontiguousarray(obs[ours]), size)
                               for theirs, ours in IMAGES.items()}
    element[STATE] = np.concatenate([np.asarray(obs[key], dtype=np.float64).reshape(n) for key, n in STATE_PARTS])
    element[PROMPT] = str(prompt)
    return element


class OpenpiLiberoPolicy:
    """A `lara.policy.Policy` behind an openpi-protocol server, spoken to as openpi's LIBERO client does: the
    element above, `Authorization: Api-Key KEY` on connect when `api_key` is given; the reply's `actions`
    [T, 7] come back as they are (the evaluation binarises the gripper, which LIBERO's Panda reads by its sign)."""

    def __init__(self, host: str, port: int, api_key: str | None = None, timeout_s: float = 120.0,
                 connect_timeout_s: float = 5.0) -> None:
        self.client = PolicyClient(host, port, timeout_s=timeout_s, connect_timeout_s=connect_timeout_s,
                                   token=api_key)
        self.prompt = ""

    def reset(self, instruction: str) -> None:
        self.prompt = instruction

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        return self.client.infer(openpi_libero_element(obs, self.prompt))["actions"]
