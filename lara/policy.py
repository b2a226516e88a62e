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

A policy served to several clients at once (`lara serve`, `lara eval --policy ws://` with several workers) runs one
episode per connection: each connection drives its own `session_policy(policy)`, which shares the weights and
nothing of the episode state. By default that is a shallow copy (attributes re-bound by `reset`/`act`, such as the
instruction, become the copy's own); a policy whose episode state is a mutable object changed in place (a frame
history, a random generator) defines `fork()` returning a policy with fresh state of its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol, runtime_checkable

import numpy as np

from lara.errors import InputError, MissingPath
from lara.outputs import recorded

ACTION_DIM = 7


@runtime_checkable
class Policy(Protocol):
    def reset(self, instruction: str) -> None:
        """Start a new episode with this language instruction."""

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        """One observation in, an action chunk float32 [T, 7] out."""


def session_policy(policy: Policy) -> Policy:
    """The policy one client connection drives: `policy.fork()` when it defines one, else a shallow copy
    (the same weights, its own instruction and episode state)."""
    import copy

    fork = getattr(policy, "fork", None)
    return fork() if callable(fork) else copy.copy(policy)


def camera_image(obs: dict[str, Any], key: str) -> np.ndarray:
    """obs[key] checked to be an image as the protocol defines it: uint8 (H, W, 3)."""
    image = obs.get(key)
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        given = (image.dtype, image.shape) if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"obs['{key}'] must be a uint8 (H, W, 3) image; got {given}")
    return image


STATE_KEYS = ("ee_pos", "ee_ori", "gripper_qpos")  # = the LIBERO reader's proprio: ee_states (6) + gripper_states (2)


def robot_state(obs: dict[str, Any], reader: str = "this policy") -> np.ndarray:
    """float32 (8,): obs' STATE_KEYS concatenated, the robot state policies trained on the reader's proprio read."""
    missing = [key for key in STATE_KEYS if key not in obs]
    if missing:
        raise ValueError(f"obs lacks {missing}: {reader} reads the robot state {list(STATE_KEYS)}")
    return np.concatenate([np.asarray(obs[key], dtype=np.float32).reshape(-1) for key in STATE_KEYS])


# -------------------------------------------------------------------------------------------------
# A policy named by a string: `checkpoint:DIR`, `ws://HOST:PORT`, `module:factory`. `lara eval`'s `--policy` adds the
# benchmark's own `scripted` expert to these (`lara.benchmarks.policy_spec`), through `named`.

REMOTE = "ws://"  # a policy served by `lara serve`


def remote_address(spec: str) -> tuple[str, int]:
    """`ws://HOST:PORT` (a `lara serve` server) -> (host, port)."""
    host, sep, port = spec[len(REMOTE):].rstrip("/").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise InputError(f"--policy {spec!r}: a served policy is given as ws://HOST:PORT (the address `lara serve` "
                         "listens on), e.g. ws://127.0.0.1:8000")
    return host, int(port)


def check_policy_spec(spec: str, named: Iterable[str] = ()) -> None:
    """What can be checked before workers spawn: the spec's form, a checkpoint folder with its config.json,
    a policy file or module that exists; raises naming what was expected (loading itself happens in the workers).
    `named`: the plain names the caller resolves itself (`lara eval`: 'scripted')."""
    import difflib
    import importlib.util

    named = list(named)
    if spec in named:
        return
    if spec.startswith(REMOTE):
        host, port = remote_address(spec)
        from lara.serving.client import PolicyClient

        if not PolicyClient(host, port, connect_timeout_s=5.0).health():
            raise InputError(f"--policy {spec!r}: no policy server answers at http://{host}:{port}/healthz; start one "
                             f"there with `lara serve --checkpoint RUN --port {port}`")
        return
    if spec.startswith("checkpoint:"):
        from lara.vla.backbones import find_vla_dir

        folder = Path(spec[len("checkpoint:"):])
        found = find_vla_dir(folder)  # raises naming the folder to pass
        if found != folder:  # the protocol checks read RUN/final/recipe.json beside the VLA folder itself
            raise MissingPath(f"--policy {spec!r}: {folder} holds no config.json; pass the VLA inside it: "
                              f"--policy checkpoint:{found}")
        return
    module_name, sep, factory = spec.rpartition(":")
    if not sep or not module_name or not factory:
        close = difflib.get_close_matches(spec, named, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        names = "".join(f"{name!r}, " for name in named)
        raise InputError(f"--policy must be {names}'checkpoint:DIR', 'ws://HOST:PORT' (a `lara serve` server) or "
                         f"'module:factory' (a callable returning a Policy), "
                         f"got {spec!r}; e.g. 'my_pkg.policies:make_policy' or 'policies.py:make_policy'.{hint}")
    if module_name.endswith(".py"):
        if not Path(module_name).is_file():
            raise MissingPath(f"--policy {spec!r}: no Python file at {module_name!r}.")
        return
    try:
        found_module = importlib.util.find_spec(module_name)
    except ModuleNotFoundError:  # a parent package is missing
        found_module = None
    if found_module is None:
        raise InputError(f"--policy {spec!r}: no module named {module_name!r} on the Python path "
                         f"(a file needs its path: 'path/to/{module_name.rpartition('.')[2]}.py:{factory}').")


def recorded_spec(spec: str) -> str:
    """How results.json names a policy: the path in `checkpoint:DIR` or `path/to/file.py:factory` as given when
    relative and relative to the project when absolute (`lara.outputs.recorded`), any other spec as given."""
    if spec.startswith("checkpoint:"):
        return "checkpoint:" + recorded(spec[len("checkpoint:"):])
    module_name, sep, factory = spec.rpartition(":")
    if sep and module_name.endswith(".py") and not spec.startswith(REMOTE):
        return f"{recorded(module_name)}:{factory}"
    return spec


def load_policy(spec: str, *, named: Mapping[str, Callable[[], Policy]] | None = None) -> Policy:
    """`checkpoint:DIR` (a VLA saved with save_pretrained, e.g. a LARA run's RUN/final/vla: any backbone of
    `lara.vla.backbones`), `ws://HOST:PORT` (a policy served by `lara serve`), `module:factory` /
    `path/to/file.py:factory`, or one of `named`'s names, whose factory makes it (`lara eval`'s `scripted`: the
    benchmark's privileged expert, `lara.benchmarks.policy_spec.load_policy`)."""
    import importlib
    import importlib.util

    named = named or {}
    check_policy_spec(spec, named)
    if spec in named:
        return named[spec]()
    if spec.startswith(REMOTE):
        from lara.serving.client import RemotePolicy

        return RemotePolicy(*remote_address(spec))
    if spec.startswith("checkpoint:"):
        from lara.vla.backbones import load_policy as load_checkpoint

        return load_checkpoint(spec[len("checkpoint:"):])
    module_name, _, factory = spec.rpartition(":")
    if module_name.endswith(".py"):
        loader = importlib.util.spec_from_file_location(Path(module_name).stem, module_name)
        module = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    if not callable(getattr(module, factory, None)):
        raise AttributeError(f"--policy {spec!r}: {module_name!r} has no callable {factory!r}.")
    return getattr(module, factory)()


def recipe_of(policy_spec: str) -> Path | None:
    """RUN/final/recipe.json beside a `checkpoint:RUN/final/vla` policy; None for other policies or runs without one."""
    if not policy_spec.startswith("checkpoint:"):
        return None
    recipe = Path(policy_spec[len("checkpoint:"):]).parent / "recipe.json"
    return recipe if recipe.is_file() else None


def policy_image_size(policy_spec: str, token: str | None = None) -> int | None:
    """The image size a checkpoint was trained at: its recipe's square `data.image_size`, else its VLA config's
    vision `image_size`; for a `ws://HOST:PORT` policy the size its `lara serve` announces (connecting with `token`
    when the server asks for one); None for other policies, or when nothing says."""
    if policy_spec.startswith(REMOTE):
        from lara.serving.client import PolicyClient

        client = PolicyClient(*remote_address(policy_spec), connect_timeout_s=5.0, token=token)
        try:
            return client.connect().get("image_size")
        finally:
            client.close()
    if not policy_spec.startswith("checkpoint:"):
        return None
    recipe = recipe_of(policy_spec)
    if recipe is not None:
        size = json.loads(recipe.read_text()).get("data", {}).get("image_size")
        if isinstance(size, int) or (isinstance(size, list) and len(set(size)) == 1):
            return size if isinstance(size, int) else size[0]
    config_path = Path(policy_spec[len("checkpoint:"):]) / "config.json"
    if not config_path.is_file():
        return None
    config = json.loads(config_path.read_text())
    vision = config.get("vision_config") or config.get("vlm_config", {}).get("vision_config") or {}
    return vision.get("image_size")
