"""LIBERO HDF5 files -> LARA training samples (a torch `Dataset`).

One sample per (episode, t):

    lam_frames       uint8   [2, 3, H, W]  (o_t, o_{t+k}); o_{t+k} is the last frame past the episode end
    lam_valid        bool    []            False when t + k is past the episode end
    image            uint8   [3, H, W]     o_t
    instruction      str
    episode_index    int                   index into `dataset.episodes`
    frame_index      int                   t
    <extra camera>   uint8   [3, H, W]     o_t of each camera in `extra_cameras`
  unless `action_free`:
    actions          float32 [H, 7]        a_t..a_{t+H-1}, normalised to [-1, 1] (gripper untouched)
    action_mask      bool    [H]           False on padding past the episode end (padding repeats the last action)
    lam_actions      float32 [k, 7]        a_t..a_{t+k-1}, normalised, padded the same way
    lam_action_mask  bool    [k]
    proprio          float32 [8]           ee_states (pos + axis-angle) + gripper_states, raw

HDF5 handles are opened lazily in the process that reads (each DataLoader worker opens its own) and
never used across a fork.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from lara.errors import MissingPath

from .config import LiberoDataConfig
from .libero_hdf5 import LiberoFileError, demo_names, images_upside_down, open_libero_hdf5, read_instruction
from .statistics import (
    GRIPPER_NOT_NORMALIZED,
    ArrayStatistics,
    DatasetStatistics,
    load_statistics,
    normalize_actions,
    save_statistics,
    unnormalize_actions,
)

HDF5_SUFFIXES = (".hdf5", ".h5")


@dataclass(frozen=True)
class Episode:
    """One demo of one file, with its low-dimensional data held in memory (frames stay on disk)."""

    path: Path
    demo: str
    length: int
    instruction: str
    upside_down: bool
    actions: np.ndarray | None  # float32 [T, 7], normalised
    proprio: np.ndarray | None  # float32 [T, 8]


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


def _read_array(group: h5py.Group, key: str, shape: tuple, where: str, hint: str) -> np.ndarray:
    if key not in group:
        raise LiberoFileError(f"{where}: missing `{key}`; {hint}. Keys present: {sorted(group.keys())}.")
    array = group[key][()]
    if array.shape != shape:
        raise LiberoFileError(f"{where}: `{key}` has shape {list(array.shape)}, expected {list(shape)}.")
    return array


class LiberoDataset(torch.utils.data.Dataset):
    """LARA training samples from LIBERO HDF5 files (official LIBERO files and the project's own).

        data = LiberoDataset(paths=["data/libero_object"], frame_gap=9, action_horizon=10, image_size=224)
        loader = DataLoader(data, batch_size=32, sampler=EpochShuffleSampler(data, seed=0), num_workers=4)
    """

    def __init__(self, config: LiberoDataConfig | None = None, **fields):
        if config is not None and fields:
            raise TypeError("pass either a LiberoDataConfig or its fields as keywords, not both.")
        self.config = config if config is not None else LiberoDataConfig(**fields)
        raw = self._scan(resolve_files(self.config.paths))  # [(episode fields, raw actions, proprio)]
        self.statistics: DatasetStatistics | None = None
        if not self.config.action_free:
            self.statistics = self._statistics([r for _, r, _ in raw], [p for _, _, p in raw])
        self.episodes = [
            Episode(**meta, actions=None if actions is None else
                    normalize_actions(actions, self.statistics.action).astype(np.float32),
                    proprio=None if proprio is None else proprio.astype(np.float32))
            for meta, actions, proprio in raw
        ]
        k = self.config.frame_gap
        starts = [range(ep.length - k) if self.config.drop_incomplete else range(ep.length) for ep in self.episodes]
        self._episode_of = np.concatenate([np.full(len(r), e, dtype=np.int64) for e, r in enumerate(starts)])
        self._t_of = np.concatenate([np.arange(len(r), dtype=np.int64) for r in starts])
        if len(self._t_of) == 0:
            longest = max(ep.length for ep in self.episodes)
            raise ValueError(f"no samples: with drop_incomplete every episode needs more than frame_gap={k} "
                             f"frames, the longest has {longest}. Lower frame_gap or keep incomplete samples.")
        self._pid: int | None = None  # process owning the open handles below
        self._files: dict[Path, h5py.File] = {}
        self._frame_sets: dict[tuple[int, str], h5py.Dataset] = {}

    # ---------------------------------------------------------------------------------------------
    # Building the index

    def _scan(self, files: list[Path]) -> list[tuple[dict, np.ndarray | None, np.ndarray | None]]:
        """Read every file's metadata and low-dimensional arrays; bad files raise or are skipped."""
        episodes, bad = [], []
        for path in files:
            try:
                episodes += self._scan_file(path)
            except (OSError, ValueError, KeyError) as error:  # h5py errors, LiberoFileError, bad JSON attrs
                message = str(error) if str(path) in str(error) else f"{path}: {error}"  # the path once
                if not self.config.skip_bad_files:
                    raise LiberoFileError(f"{message} (to read the other files: data.skip_bad_files=true on the "
                                          "lara train command line, skip_bad_files=True in Python)") from error
                bad.append(message)
        if bad:
            warnings.warn(f"skipped {len(bad)} unreadable LIBERO file(s):\n  " + "\n  ".join(bad), stacklevel=3)
        if not episodes:
            raise LiberoFileError(f"no readable episodes in {[str(p) for p in self.config.paths]}.")
        return episodes

    def _scan_file(self, path: Path) -> list[tuple[dict, np.ndarray | None, np.ndarray | None]]:
        cameras, out = [self.config.camera, *self.config.extra_cameras], []
        with open_libero_hdf5(path) as handle:
            instruction, upside_down = read_instruction(handle, path), images_upside_down(handle)
            names = demo_names(handle)
            if not names:
                raise LiberoFileError(f"{path}: the `data` group holds no demo_N groups.")
            for name in names:
                demo, where = handle["data"][name], f"{path} data/{name}"
                obs = demo.get("obs")
                if obs is None:
                    raise LiberoFileError(f"{where}: missing the `obs` group. Keys present: {sorted(demo.keys())}.")
                T = None
                for camera in cameras:
                    if camera not in obs:
                        raise LiberoFileError(f"{where}/obs: no camera {camera!r}; available: {sorted(obs.keys())}."
                                              " Set `camera` / `extra_cameras` to some of them.")
                    frames = obs[camera]
                    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
                        raise LiberoFileError(f"{where}/obs/{camera}: expected uint8 [T > 0, H, W, 3] images, "
                                              f"got {frames.dtype} {list(frames.shape)}.")
                    if T is not None and len(frames) != T:
                        raise LiberoFileError(f"{where}/obs/{camera}: {len(frames)} frames, but "
                                              f"obs/{cameras[0]} has {T}.")
                    T = len(frames)
                actions = proprio = None
                if not self.config.action_free:
                    hint = "needed for action chunks; set action_free=True to read frames only"
                    actions = _read_array(demo, "actions", (T, 7), where, hint)
                    proprio = np.concatenate([_read_array(obs, "ee_states", (T, 6), f"{where}/obs", hint),
                                              _read_array(obs, "gripper_states", (T, 2), f"{where}/obs", hint)], 1)
                meta = dict(path=path, demo=name, length=T, instruction=instruction, upside_down=upside_down)
                out.append((meta, actions, proprio))
        return out

    def _statistics(self, actions: list[np.ndarray], proprio: list[np.ndarray]) -> DatasetStatistics:
        if self.config.statistics_path is not None:
            return load_statistics(self.config.statistics_path, self.config.dataset_name)
        return DatasetStatistics(
            action=ArrayStatistics.compute(np.concatenate(actions), GRIPPER_NOT_NORMALIZED),
            proprio=ArrayStatistics.compute(np.concatenate(proprio)),
            num_transitions=sum(map(len, actions)),
            num_trajectories=len(actions),
        )

    def save_statistics(self, path: str | os.PathLike) -> Path:
        """Write `dataset_statistics.json` (OpenVLA's norm_stats layout) into a directory or file path."""
        if self.statistics is None:
            raise ValueError("action_free datasets have no action statistics to save.")
        return save_statistics(self.statistics, path, self.config.dataset_name)

    def unnormalize_actions(self, normalized):
        """[..., 7] policy output in [-1, 1] -> raw LIBERO actions (numpy or torch)."""
        if self.statistics is None:
            raise ValueError("action_free datasets have no action statistics; load them with load_statistics.")
        return unnormalize_actions(normalized, self.statistics.action)

    # ---------------------------------------------------------------------------------------------
    # Reading samples

    def __len__(self) -> int:
        return len(self._t_of)

    def _frame_set(self, episode_index: int, camera: str) -> h5py.Dataset:
        if self._pid != os.getpid():  # first read here, or a forked worker: never reuse a parent's handles
            for handle in self._files.values():
                handle.close()
            self._pid, self._files, self._frame_sets = os.getpid(), {}, {}
        if (episode_index, camera) not in self._frame_sets:
            episode = self.episodes[episode_index]
            if episode.path not in self._files:
                self._files[episode.path] = open_libero_hdf5(episode.path)
            obs = self._files[episode.path]["data"][episode.demo]["obs"]
            self._frame_sets[episode_index, camera] = obs[camera]
        return self._frame_sets[episode_index, camera]

    def _frames(self, episode_index: int, camera: str, times: list[int]) -> torch.Tensor:
        """uint8 [len(times), 3, H, W], upright and resized."""
        episode = self.episodes[episode_index]
        try:
            frames = np.stack([self._frame_set(episode_index, camera)[t] for t in times])  # (N, H, W, 3)
        except (OSError, KeyError) as error:
            raise LiberoFileError(f"{episode.path} data/{episode.demo}: reading obs/{camera} frames "
                                  f"{times} failed: {error}") from error
        if episode.upside_down:
            # robosuite's raw opengl render; rotate 180 degrees (rows and columns) like the evaluation
            # protocol does to live observations, so training and evaluation see the same image
            frames = frames[:, ::-1, ::-1]
        frames = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)  # (N, 3, H, W)
        size = self.config.image_size
        if size is not None:
            size = (size, size) if isinstance(size, int) else tuple(size)
            if tuple(frames.shape[-2:]) != size:
                frames = F.interpolate(frames.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
                frames = frames.round().clamp(0, 255).to(torch.uint8)
        return frames.contiguous()

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample {index} out of range for a dataset of {len(self)} samples.")
        index = int(index) % len(self)
        episode_index, t = int(self._episode_of[index]), int(self._t_of[index])
        episode, k = self.episodes[episode_index], self.config.frame_gap
        last = episode.length - 1
        frames = self._frames(episode_index, self.config.camera, [t, min(t + k, last)])  # (2, 3, H, W)
        sample = {
            "lam_frames": frames,
            "lam_valid": torch.tensor(t + k <= last),
            "image": frames[0].clone(),
            "instruction": episode.instruction,
            "episode_index": episode_index,
            "frame_index": t,
        }
        for camera in self.config.extra_cameras:
            sample[camera] = self._frames(episode_index, camera, [t])[0]
        if episode.actions is not None:
            sample["actions"], sample["action_mask"] = _chunk(episode.actions, t, self.config.action_horizon)
            sample["lam_actions"], sample["lam_action_mask"] = _chunk(episode.actions, t, k)
            sample["proprio"] = torch.from_numpy(episode.proprio[t].copy())
        return sample

    def close(self) -> None:
        """Close the HDF5 handles this process opened (they reopen on the next read)."""
        for handle in self._files.values():
            handle.close()
        self._files, self._frame_sets = {}, {}

    def __getstate__(self) -> dict:  # spawn-started workers get no open handles
        return {**self.__dict__, "_pid": None, "_files": {}, "_frame_sets": {}}

    def __repr__(self) -> str:
        files = len({ep.path for ep in self.episodes})
        return (f"LiberoDataset({len(self)} samples, {len(self.episodes)} episodes, {files} files, "
                f"camera={self.config.camera}, frame_gap={self.config.frame_gap}, "
                f"action_horizon={self.config.action_horizon}, action_free={self.config.action_free})")


def _chunk(actions: np.ndarray, t: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """actions[t : t+length], the last action repeated past the end; returns (chunk [length, D], mask [length])."""
    steps = np.arange(t, t + length)
    mask = steps < len(actions)
    chunk = actions[np.minimum(steps, len(actions) - 1)]  # (length, D)
    return torch.from_numpy(chunk), torch.from_numpy(mask)
