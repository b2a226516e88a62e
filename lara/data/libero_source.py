"""LIBERO HDF5 files as an episode source (one `Episode` per `data/demo_N`); see `lara.data.episodes`.

Low-dimensional arrays (actions, ee_states + gripper_states) are read at open; frames on demand, with
handles opened lazily in the process that reads (each DataLoader worker opens its own).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import h5py
import numpy as np

from lara.errors import MissingPath

from .config import LiberoDataConfig, SourceSpec
from .episodes import SKIP_HINT, Episode
from .libero_hdf5 import CAMERA_KEYS, LiberoFileError, control_frequency, damaged, demo_names, images_upside_down, \
    open_libero_hdf5, read_instruction

HDF5_SUFFIXES = (".hdf5", ".h5")


def resolve_files(paths: list[Path]) -> list[Path]:
    """Files as given, directories expanded to their sorted *.hdf5 / *.h5 files."""
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in HDF5_SUFFIXES and p.is_file())
            if not found:
                raise MissingPath(f"{path}: directory holds no *.hdf5 or *.h5 files.")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise MissingPath(f"{path}: no such file or directory (expected LIBERO HDF5 files).")
    return files


def recognise(path: Path) -> bool:
    """An .hdf5/.h5 file, or a folder holding some (not recursive)."""
    if path.is_file():
        return path.suffix in HDF5_SUFFIXES
    return path.is_dir() and any(p.suffix in HDF5_SUFFIXES for p in path.iterdir())


def options(config: LiberoDataConfig, spec: SourceSpec) -> dict:
    """The data core's settings this reader takes: the cameras to read, and whether to leave the actions unread."""
    return {"cameras": (config.camera, *config.extra_cameras), "action_free": config.actions_unread(spec)}


def open_source(path: Path, *, skip_bad_files: bool = False, cameras: tuple[str, ...] = ("agentview_rgb",),
                action_free: bool = False) -> "LiberoSource":
    return LiberoSource(path, cameras=cameras, action_free=action_free, skip_bad_files=skip_bad_files)


def _read_array(group: h5py.Group, key: str, shape: tuple, where: str, hint: str) -> np.ndarray:
    if key not in group:
        raise LiberoFileError(f"{where}: missing `{key}`; {hint}. Keys present: {sorted(group.keys())}.")
    array = group[key][()]
    if array.shape != shape:
        raise LiberoFileError(f"{where}: `{key}` has shape {list(array.shape)}, expected {list(shape)}.")
    return array


class LiberoSource:
    """The demos of LIBERO HDF5 files (a file, or a folder's *.hdf5 / *.h5 files in sorted order).

    cameras: obs keys every demo must hold (the first is the LAM's); action_free: read frames only, so
    files without `actions` work; skip_bad_files: skip unreadable files with one warning listing them.
    """

    format = "libero_hdf5"

    def __init__(self, path: Path, *, cameras: tuple[str, ...], action_free: bool, skip_bad_files: bool):
        self.path, self.cameras, self.action_free = Path(path), tuple(cameras), action_free
        self._records, bad = [], []
        self._sizes: dict[tuple, tuple[int, int]] = {}  # (episode key, camera) -> (H, W), from the datasets' shapes
        for file in resolve_files([self.path]):
            try:
                self._records += self._scan_file(file)
            except (OSError, ValueError, KeyError, RuntimeError) as error:  # h5py errors, LiberoFileError
                message = str(error if isinstance(error, LiberoFileError) else damaged(file, error))
                if not skip_bad_files:
                    raise LiberoFileError(f"{message} {SKIP_HINT}") from error
                bad.append(message)
        if bad:
            warnings.warn(f"skipped {len(bad)} unreadable LIBERO file(s):\n  " + "\n  ".join(bad), stacklevel=4)
        if not self._records:
            raise LiberoFileError(f"no readable episodes in {self.path}.")
        self._pid: int | None = None  # process owning the open handles below
        self._files: dict[Path, h5py.File] = {}

    def episodes(self) -> list[Episode]:
        return [Episode(**fields, reader=self) for fields in self._records]

    def statistics(self):
        return None

    def frame_size(self, key: tuple[Path, str, bool], camera: str) -> tuple[int, int]:
        """(H, W) of an episode's camera, from the file's dataset shape (nothing decoded)."""
        return self._sizes[key, camera]

    def _scan_file(self, path: Path) -> list[dict]:
        out = []
        with open_libero_hdf5(path) as handle:
            instruction, upside_down = read_instruction(handle, path), images_upside_down(handle)
            fps = control_frequency(handle)  # None where the file records none
            names = demo_names(handle)
            if not names:
                raise LiberoFileError(f"{path}: the `data` group holds no demo_N groups.")
            for name in names:
                demo, where = handle["data"][name], f"{path} data/{name}"
                obs = demo.get("obs")
                if obs is None:
                    raise LiberoFileError(f"{where}: missing the `obs` group. Keys present: {sorted(demo.keys())}.")
                T = None
                for camera in self.cameras:
                    if camera not in obs:
                        raise LiberoFileError(f"{where}/obs: no camera {camera!r}; available: {sorted(obs.keys())}."
                                              " Set `camera` / `extra_cameras` to some of them.")
                    frames = obs[camera]
                    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
                        raise LiberoFileError(f"{where}/obs/{camera}: expected uint8 [T > 0, H, W, 3] images, "
                                              f"got {frames.dtype} {list(frames.shape)}.")
                    if T is not None and len(frames) != T:
                        raise LiberoFileError(f"{where}/obs/{camera}: {len(frames)} frames, but "
                                              f"obs/{self.cameras[0]} has {T}.")
                    T = len(frames)
                images = tuple(key for key in obs if _is_images(obs[key]))  # every camera, for Episode.frames
                for image in images:
                    self._sizes[(path, name, upside_down), image] = tuple(obs[image].shape[1:3])
                actions = states = None
                if not self.action_free:
                    hint = "needed for action chunks; set action_free=True to read frames only"
                    actions = _read_array(demo, "actions", (T, 7), where, hint)
                    states = np.concatenate([_read_array(obs, "ee_states", (T, 6), f"{where}/obs", hint),
                                             _read_array(obs, "gripper_states", (T, 2), f"{where}/obs", hint)], 1)
                # fields, not Episodes: an Episode references its reader, and a reader holding its
                # episodes would be a cycle that keeps the files open until the garbage collector runs
                out.append(dict(source=where, path=path, key=(path, name, upside_down), length=T, fps=fps,
                                instruction=instruction, cameras=images, actions=actions, states=states))
        return out

    def _handle(self, path: Path) -> h5py.File:
        if self._pid != os.getpid():  # first read here, or a forked worker: never reuse a parent's handles
            self.close()
            self._pid = os.getpid()
        if path not in self._files:
            self._files[path] = open_libero_hdf5(path)
        return self._files[path]

    def read_frames(self, key: tuple[Path, str, bool], camera: str, indices: list[int]) -> np.ndarray:
        path, name, upside_down = key
        try:
            dataset = self._handle(path)["data"][name]["obs"][camera]
            frames = np.stack([dataset[t] for t in indices])  # (N, H, W, 3)
        except (OSError, KeyError, RuntimeError) as error:
            raise LiberoFileError(f"{path} data/{name}: reading obs/{camera} frames "
                                  f"{indices} failed: {error}") from error
        if upside_down:
            # robosuite's raw opengl render; rotate 180 degrees (rows and columns) like the evaluation
            # protocol does to live observations, so training and evaluation see the same image
            frames = frames[:, ::-1, ::-1]
        return np.ascontiguousarray(frames)

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files = {}

    def __getstate__(self) -> dict:  # spawn-started workers get no open handles
        return {**self.__dict__, "_pid": None, "_files": {}}



def _is_images(item) -> bool:
    return isinstance(item, h5py.Dataset) and item.ndim == 4 and item.shape[-1] == 3 and item.dtype == np.uint8
