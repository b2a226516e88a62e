"""The LIBERO HDF5 file format: an atomic writer and a reader-side inspector.

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
files written here store them upright and say so with macros_image_convention = "opencv".
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from lara.outputs import new_staging_file, publish

from .episodes import SourceError

IMAGE_CONVENTION_UPRIGHT = "opencv"  # what this writer stores
IMAGE_CONVENTION_UPSIDE_DOWN = "opengl"  # official LIBERO files (also assumed when the attr is absent)
CAMERA_KEYS = ("agentview_rgb", "eye_in_hand_rgb")
# LIBERO's control frequency (robosuite's control_freq, 20 Hz): the time base of a file whose env_args records none,
# the same in every command that gives frames a time (`lara data videos`, `lara data convert --to lerobot`)
LIBERO_FPS = 20


class LiberoFileError(SourceError):
    """A LIBERO HDF5 file, or data given to the writer, does not match the expected layout."""


def _axis_angle_to_quat_xyzw(axis_angle: np.ndarray) -> np.ndarray:
    """[T, 3] axis-angle -> [T, 4] unit quaternion (x, y, z, w), robosuite's order."""
    angle = np.linalg.norm(axis_angle, axis=-1, keepdims=True)  # (T, 1)
    # sin(angle/2)/angle -> 1/2 as angle -> 0: avoids 0/0 for the identity rotation
    scale = np.where(angle > 1e-12, np.sin(angle / 2) / np.maximum(angle, 1e-12), 0.5)
    return np.concatenate([axis_angle * scale, np.cos(angle / 2)], axis=-1)


def _check_array(name: str, value: Any, shape: tuple, *, kind: str) -> np.ndarray:
    """Validate shape (None = any size) and dtype kind ("float" or "uint8"); returns a numpy array."""
    array = np.asarray(value)
    shape_ok = array.ndim == len(shape) and all(e is None or e == g for e, g in zip(shape, array.shape))
    expected_shape = "[" + ", ".join("*" if e is None else str(e) for e in shape) + "]"
    if not shape_ok:
        raise LiberoFileError(
            f"add_demo: `{name}` must have shape {expected_shape}, got {list(array.shape)}."
        )
    if kind == "uint8":
        if array.dtype != np.uint8:
            raise LiberoFileError(
                f"add_demo: `{name}` must be uint8 RGB images, got dtype {array.dtype}; "
                "convert with (x * 255).round().astype(np.uint8) if it holds floats in [0, 1]."
            )
    elif not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise LiberoFileError(f"add_demo: `{name}` must be a float array, got dtype {array.dtype}.")
    elif not np.all(np.isfinite(array)):
        raise LiberoFileError(f"add_demo: `{name}` contains NaN or inf values; expected finite numbers.")
    return array


class LiberoHDF5Writer:
    """Writes demonstrations in the official LIBERO HDF5 layout, atomically.

    The file is built under a temporary name next to `path` and renamed onto `path` only when the
    writer closes without an exception, so readers never see a half-written file:

        with LiberoHDF5Writer("out/put_bowl_demo.hdf5", language="put the bowl on the plate") as w:
            w.add_demo(actions=..., agentview_rgb=..., ee_states=..., gripper_states=..., joint_states=...)
    """

    def __init__(
        self,
        path: str | os.PathLike,
        language: str,
        problem_info: dict | None = None,
        env_args: dict | None = None,
        bddl_file_name: str | None = None,
        image_compression: str | None = "gzip",
    ):
        if not isinstance(language, str) or not language.strip():
            raise LiberoFileError(f"`language` must be a non-empty instruction string, got {language!r}.")
        problem_info = dict(problem_info or {})
        given = problem_info.get("language_instruction")
        if given is not None and given != language:
            raise LiberoFileError(
                f"problem_info['language_instruction'] ({given!r}) differs from language ({language!r}); "
                "pass the same instruction or leave it out of problem_info."
            )
        problem_info["language_instruction"] = language
        self.path = Path(path)
        self.language = language
        self.image_compression = image_compression
        try:  # the staging file beside it, named after the writer's process: stale ones of this path are removed
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._tmp_path = new_staging_file(self.path)
        except OSError as error:
            raise LiberoFileError(f"{self.path}: cannot write there ({error.strerror or error}); give a folder you "
                                  "can write to.") from None
        try:
            self._file = h5py.File(self._tmp_path, "w")
        except OSError:
            self._tmp_path.unlink(missing_ok=True)
            raise
        self._data = self._file.create_group("data")
        self._data.attrs["problem_info"] = json.dumps(problem_info)
        self._data.attrs["env_args"] = json.dumps(env_args or {})
        self._data.attrs["bddl_file_name"] = bddl_file_name or ""
        self._data.attrs["macros_image_convention"] = IMAGE_CONVENTION_UPRIGHT
        self.num_demos = 0
        self.total = 0

    def add_demo(
        self,
        *,
        actions,
        agentview_rgb,
        ee_states,
        gripper_states,
        joint_states,
        eye_in_hand_rgb=None,
        states=None,
        rewards=None,
        dones=None,
        attrs: dict | None = None,
    ) -> str:
        """Append one episode as `data/demo_N`; returns its name. Images must be upright uint8 [T, H, W, 3].

        Defaults follow LIBERO: `dones` is 1 at the last step only, `rewards` is 1 at the last step when
        `attrs["success"]` is true or absent, `states` is [T, 0] when no simulator state exists.
        """
        if self._file is None:
            raise LiberoFileError(f"{self.path}: the writer is closed; open a new LiberoHDF5Writer.")
        actions = _check_array("actions", actions, (None, 7), kind="float")
        T = len(actions)
        if T == 0:
            raise LiberoFileError("add_demo: `actions` is empty; a demo needs at least one step.")
        agentview = _check_array("agentview_rgb", agentview_rgb, (T, None, None, 3), kind="uint8")
        ee_states = _check_array("ee_states", ee_states, (T, 6), kind="float")
        gripper_states = _check_array("gripper_states", gripper_states, (T, 2), kind="float")
        joint_states = _check_array("joint_states", joint_states, (T, None), kind="float")  # 7 on LIBERO's Panda
        wrist = None
        if eye_in_hand_rgb is not None:
            wrist = _check_array("eye_in_hand_rgb", eye_in_hand_rgb, (T, None, None, 3), kind="uint8")
        states = np.zeros((T, 0)) if states is None else _check_array("states", states, (T, None), kind="float")
        attrs = {key: json.dumps(value) if isinstance(value, (dict, list)) else value
                 for key, value in (attrs or {}).items()}
        for key, value in attrs.items():
            if np.asarray(value).dtype == object:
                raise LiberoFileError(f"add_demo: attrs[{key!r}] = {value!r} cannot be stored as an HDF5 attribute; "
                                      "expected a number, string, bool, numeric array, or a JSON-able dict/list.")
        if dones is None:
            dones = np.zeros(T, dtype=np.uint8)
            dones[-1] = 1
        dones = _check_array("dones", dones, (T,), kind="float").astype(np.uint8)
        if rewards is None:
            rewards = np.zeros(T)
            rewards[-1] = float(bool(attrs.get("success", True)))
        rewards = _check_array("rewards", rewards, (T,), kind="float")

        ee_pos, ee_ori = ee_states[:, :3], ee_states[:, 3:]
        robot_states = np.concatenate([gripper_states, ee_pos, _axis_angle_to_quat_xyzw(ee_ori)], axis=1)
        name = f"demo_{self.num_demos}"
        demo = self._data.create_group(name)
        demo.create_dataset("actions", data=actions.astype(np.float64))
        demo.create_dataset("states", data=states.astype(np.float64))
        demo.create_dataset("robot_states", data=robot_states.astype(np.float64))
        demo.create_dataset("rewards", data=rewards.astype(np.float64))
        demo.create_dataset("dones", data=dones)
        obs = demo.create_group("obs")
        for key, images in (("agentview_rgb", agentview), ("eye_in_hand_rgb", wrist)):
            if images is not None:
                # one chunk per frame: a reader fetching frame t decompresses only that frame
                obs.create_dataset(key, data=images, chunks=(1, *images.shape[1:]),
                                   compression=self.image_compression)
        obs.create_dataset("ee_pos", data=ee_pos.astype(np.float64))
        obs.create_dataset("ee_ori", data=ee_ori.astype(np.float64))
        obs.create_dataset("ee_states", data=ee_states.astype(np.float64))
        obs.create_dataset("gripper_states", data=gripper_states.astype(np.float64))
        obs.create_dataset("joint_states", data=joint_states.astype(np.float64))
        demo.attrs.update(attrs)
        demo.attrs["num_samples"] = T
        self.num_demos += 1
        self.total += T
        return name

    def close(self) -> Path:
        """Finish the file and move it onto `path` atomically; returns `path`."""
        if self._file is None:
            raise LiberoFileError(f"{self.path}: the writer is already closed.")
        if self.num_demos == 0:
            self.discard()
            raise LiberoFileError(f"{self.path}: no demo was added; nothing was written. Call add_demo first.")
        self._data.attrs["num_demos"] = self.num_demos
        self._data.attrs["total"] = self.total
        self._file.close()
        self._file = None
        return publish(self._tmp_path, self.path)

    def discard(self) -> None:
        """Drop everything written so far; nothing appears at `path`."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._tmp_path.unlink(missing_ok=True)

    def __enter__(self) -> "LiberoHDF5Writer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.discard()
        elif self._file is not None:
            self.close()


# ---------------------------------------------------------------------------------------------------
# Reader side


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


def main(argv: list[str] | None = None) -> int:
    """`python -m lara.data.libero_hdf5 FILE...`: one summary line per file and per demo."""
    import sys

    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print("usage: python -m lara.data.libero_hdf5 FILE.hdf5 [FILE.hdf5 ...]", file=sys.stderr)
        return 2
    status = 0
    for path in paths:
        try:
            info = inspect_libero_hdf5(path)
        except (OSError, LiberoFileError) as error:
            print(f"error: {error}", file=sys.stderr)
            status = 1
            continue
        print(f"{info.path}: {info.num_demos} demos, {info.total} steps, {info.instruction!r}, "
              f"images {info.image_shape} {'upside-down (opengl)' if info.upside_down else 'upright (opencv)'}, "
              f"actions {'yes' if info.has_actions else 'no'}, obs {list(info.obs_keys)}")
        for name, length in info.demo_lengths.items():
            print(f"  {name}: {length} steps")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
