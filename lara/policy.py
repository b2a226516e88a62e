"""The `Policy` protocol shared by evaluation (LIBERO, SIMPLER) and the real-robot server.

A policy is reset with an instruction at the start of an episode and then maps one observation to
an action chunk. Observations are plain dicts of numpy arrays so that simulators, the policy server
and recorded episodes all speak the same language:

    obs = {
        "agentview_rgb":   uint8 [H, W, 3],   # third-person camera, already upright
        "eye_in_hand_rgb": uint8 [H, W, 3],   # wrist camera (optional)
        "ee_pos":          float [3],         # end-effector position, base frame, metres
        "ee_ori":          float [3],         # end-effector orientation, axis-angle
        "gripper_qpos":    float [2],
        "joint_qpos":      float [7],
        "instruction":     str,
    }

`act` returns float32 [T, 7]: T >= 1 actions of (dx, dy, dz, droll, dpitch, dyaw, gripper), the
LIBERO / OpenVLA convention, gripper in [-1, 1] with -1 = open, +1 = close.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

ACTION_DIM = 7


@runtime_checkable
class Policy(Protocol):
    def reset(self, instruction: str) -> None:
        """Start a new episode with this language instruction."""

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        """One observation in, an action chunk float32 [T, 7] out."""


def camera_image(obs: dict[str, Any], key: str) -> np.ndarray:
    """obs[key] checked to be an image as the protocol defines it: uint8 (H, W, 3)."""
    image = obs.get(key)
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        given = (image.dtype, image.shape) if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"obs['{key}'] must be a uint8 (H, W, 3) image; got {given}")
    return image
