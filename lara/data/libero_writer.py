"""The LIBERO HDF5 writer: demonstrations in the official layout (`lara.data.libero_hdf5` describes it), written
atomically. Images are stored upright and the file says so (macros_image_convention = "opencv").

Needs only h5py and numpy: the robot recorder writes with it under the system python, without torch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from lara.outputs import publish, staging_beside

from .libero_hdf5 import IMAGE_CONVENTION_UPRIGHT, LiberoFileError


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
        # the staging file beside it, named after the writer's process: stale ones of this path are removed
        self._tmp_path = staging_beside(self.path, error=LiberoFileError)
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
