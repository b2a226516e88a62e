"""The LIBERO HDF5 file format and its read side: open a file, list its demos, read its instruction and image
convention, summarise it. `lara.data.libero_source` builds the episode source on these; `lara.data.libero_writer`
writes the format. Both this module and the writer need only h5py and numpy (the robot recorder runs without torch).

Layout (official LIBERO, as written by LIBERO's `scripts/create_dataset.py`):

    data/                         attrs: problem_info (JSON, incl. language_instruction), env_args (JSON),
                                         bddl_file_name, macros_image_convention, num_demos, total
    data/demo_N/                  attrs: num_samples (+ any attrs given to `add_demo`, e.g. success)
        actions        float64 [T, 7]   (dx, dy, dz, droll, dpitch, dyaw, gripper)
        states         float64 [T, S]   simulator states ([T, 0] when there is no simulator)
        robot_states   float64 [T, 9]   gripper_states (2) + ee_pos (3) + ee quaternion xyzw (4)
        rewards        float64 [T]
        dones          uint8   [T]
        obs/agentview_rgb    uint8 [T, H, W, 3]
        obs/eye_in_hand_rgb  uint8 [T, H, W, 3]   (only when given)
        obs/ee_pos [T, 3], obs/ee_ori [T, 3] (axis-angle), obs/ee_states [T, 6],
        obs/gripper_states [T, 2], obs/joint_states [T, J] (the arm's joints: 7 on LIBERO's Panda, 6 on a WidowX)

Official files store robosuite's raw render ("opengl" convention, attr absent or "opengl"), which the reader
rotates 180 degrees as the LIBERO evaluation protocol does to live observations;
files `LiberoHDF5Writer` writes store them upright and say so with macros_image_convention = "opencv".
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from .episodes import SourceError

IMAGE_CONVENTION_UPRIGHT = "opencv"  # what LiberoHDF5Writer stores
IMAGE_CONVENTION_UPSIDE_DOWN = "opengl"  # official LIBERO files (also assumed when the attr is absent)
CAMERA_KEYS = ("agentview_rgb", "eye_in_hand_rgb")
# LIBERO's control frequency (robosuite's control_freq, 20 Hz): the time base of a file whose env_args records none,
# the same in every command that gives frames a time (`lara data videos`, `lara data convert --to lerobot`)
LIBERO_FPS = 20


class LiberoFileError(SourceError):
    """A LIBERO HDF5 file, or data given to the writer, does not match the expected layout."""


def open_libero_hdf5(path: str | os.PathLike) -> h5py.File:
    """Open a LIBERO HDF5 file read-only; a corrupt, truncated or foreign file raises an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such LIBERO HDF5 file.")
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise LiberoFileError(
            f"{path}: cannot be read as HDF5 (corrupt or truncated?): {error}. "
            "Regenerate or re-download this file, or drop it from the dataset."
        ) from error
    try:
        if "data" not in handle or not isinstance(handle["data"], h5py.Group):
            keys = list(handle.keys())
            handle.close()
            raise LiberoFileError(f"{path}: expected a top-level `data` group (LIBERO layout), found keys {keys}.")
    except (OSError, KeyError, RuntimeError) as error:
        handle.close()
        raise damaged(path, error) from error
    return handle


def damaged(path: str | os.PathLike, error: Exception) -> LiberoFileError:
    """The error for a file that opens as HDF5 but whose structure cannot be read (overwritten bytes)."""
    message = error.args[0] if isinstance(error, KeyError) and error.args else error
    return LiberoFileError(f"{path}: the HDF5 file is damaged (overwritten or corrupt bytes?): {message}. "
                           "Regenerate or re-download this file, or drop it from the dataset.")


def demo_names(handle: h5py.File) -> list[str]:
    """`data/demo_N` names in numeric order (demo_2 before demo_10)."""
    names = [name for name in handle["data"].keys() if re.fullmatch(r"demo_\d+", name)]
    return sorted(names, key=lambda name: int(name.split("_")[1]))


def instruction_from_file_name(path: str | os.PathLike) -> str:
    """Official LIBERO file names carry the instruction: `KITCHEN_SCENE3_turn_on_the_stove_demo.hdf5`
    -> "turn on the stove" (scene prefix in capitals and the `_demo` suffix dropped)."""
    words = Path(path).stem.removesuffix("_demo").split("_")
    while words and re.fullmatch(r"[A-Z][A-Z0-9]*", words[0]):
        words = words[1:]
    return " ".join(words)


def read_instruction(handle: h5py.File, path: str | os.PathLike) -> str:
    """problem_info.language_instruction when present, else the instruction in the file name."""
    raw = handle["data"].attrs.get("problem_info")
    if raw is not None:
        try:
            info = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        except ValueError as error:
            raise LiberoFileError(f"{path}: data.attrs['problem_info'] is not valid JSON: {error}.") from error
        if isinstance(info, dict) and info.get("language_instruction"):
            return str(info["language_instruction"])
    return instruction_from_file_name(path)


def control_frequency(handle: h5py.File) -> int | None:
    """The control frequency a file records (env_args' env_kwargs.control_freq, robosuite's), None where it records
    none: its frames' rate (`Episode.fps`)."""
    try:
        raw = handle["data"].attrs.get("env_args", "{}")
        env_args = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        found = env_args.get("env_kwargs", {}).get("control_freq") if isinstance(env_args, dict) else None
        return int(found) if found is not None and float(found) > 0 else None
    except (ValueError, TypeError, AttributeError):
        return None


def images_upside_down(handle: h5py.File) -> bool:
    """True for files in robosuite's "opengl" image convention (official LIBERO files, attr absent)."""
    value = handle["data"].attrs.get("macros_image_convention", IMAGE_CONVENTION_UPSIDE_DOWN)
    value = value.decode() if isinstance(value, bytes) else str(value)
    return value != IMAGE_CONVENTION_UPRIGHT


@dataclass(frozen=True)
class LiberoFileInfo:
    """A summary of one LIBERO HDF5 file (see `inspect_libero_hdf5`)."""

    path: Path
    instruction: str
    demo_lengths: dict[str, int]
    obs_keys: tuple[str, ...]
    image_shape: tuple[int, ...] | None  # (H, W, 3) of agentview_rgb in the first demo
    upside_down: bool
    has_actions: bool

    @property
    def num_demos(self) -> int:
        return len(self.demo_lengths)

    @property
    def total(self) -> int:
        return sum(self.demo_lengths.values())


def inspect_libero_hdf5(path: str | os.PathLike) -> LiberoFileInfo:
    """Open a file, summarise it and close it again (a quick look before training or after recording)."""
    with open_libero_hdf5(path) as handle:
        try:
            return _summary(handle, path)
        except (OSError, KeyError, RuntimeError) as error:  # h5py's errors on damaged structure
            raise damaged(path, error) from error


def _summary(handle: h5py.File, path: str | os.PathLike) -> LiberoFileInfo:
    """The summary of an open file (its errors are turned into LiberoFileError by the caller)."""
    names = demo_names(handle)
    if not names:
        raise LiberoFileError(f"{path}: the `data` group holds no demo_N groups.")
    first = handle["data"][names[0]]
    obs = first.get("obs")
    obs_keys = tuple(sorted(obs.keys())) if obs is not None else ()
    image_shape = tuple(obs["agentview_rgb"].shape[1:]) if "agentview_rgb" in obs_keys else None
    lengths = {}
    for name in names:
        demo = handle["data"][name]
        if "num_samples" in demo.attrs:
            lengths[name] = int(demo.attrs["num_samples"])
        elif "actions" in demo:
            lengths[name] = len(demo["actions"])
        else:
            lengths[name] = len(demo["obs"][obs_keys[0]]) if obs_keys else 0
    return LiberoFileInfo(
        path=Path(path),
        instruction=read_instruction(handle, path),
        demo_lengths=lengths,
        obs_keys=obs_keys,
        image_shape=image_shape,
        upside_down=images_upside_down(handle),
        has_actions="actions" in first,
    )


def __getattr__(name: str):
    """`lara.data.libero_hdf5.LiberoHDF5Writer`, the writer's import path before it got its own module (the docs of
    0.1.0 named it), still resolves; new code imports `lara.data.LiberoHDF5Writer`."""
    if name == "LiberoHDF5Writer":
        from .libero_writer import LiberoHDF5Writer

        return LiberoHDF5Writer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: list[str] | None = None) -> int:
    """`python -m lara.data.libero_hdf5 FILE...`, kept where users type it; the command is
    `lara.data.inspect.libero_files_main`, beside `lara data inspect`."""
    from .inspect import libero_files_main

    return libero_files_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
