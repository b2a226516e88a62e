"""The one data core: episodes of any source (`lara.data.episodes`) -> LARA training samples (a torch `Dataset`).

One sample per (episode, t):

    lam_frames       uint8   [2, 3, H, W]  (o_t, o_{t+k}); o_{t+k} is the last frame past the episode end
    lam_valid        bool    []            False when t + k is past the episode end
    image            uint8   [3, H, W]     o_t
    instruction      str
    episode_index    int                   index into `dataset.episodes`
    frame_index      int                   t
    <extra camera>   uint8   [3, H, W]     o_t of each camera in `extra_cameras`
  when the episode has actions (not `action_free`, not a video):
    actions          float32 [H, A]        a_t..a_{t+H-1}, normalised to [-1, 1] (7-D: gripper untouched)
    action_mask      bool    [H]           False on padding past the episode end (padding repeats the last action)
    lam_actions      float32 [k, A]        a_t..a_{t+k-1}, normalised, padded the same way
    lam_action_mask  bool    [k]
    proprio          float32 [S]           the episode's states (LIBERO: ee_states + gripper_states), raw

Readers open their files lazily in the process that reads (each DataLoader worker opens its own) and
never use a handle across a fork.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .config import LiberoDataConfig, SourceSpec
from .episodes import Episode, EpisodeSource, SourceError, detect_format, open_source, reader
from .sampler import window_order
from .split import episode_id, split_episodes
from .statistics import (
    GRIPPER_NOT_NORMALIZED,
    ArrayStatistics,
    DatasetStatistics,
    load_statistics,
    normalize_actions,
    save_statistics,
    unnormalize_actions,
)


def _check_finite(episode: Episode, name: str, values: np.ndarray) -> None:
    """NaN or inf in the data would make the statistics and the trained policy NaN: refuse, naming the step."""
    bad = ~np.isfinite(values)
    if bad.any():
        step, dim = map(int, np.argwhere(bad)[0])
        raise SourceError(f"{episode.source}: {name}[{step}, {dim}] = {values[step, dim]} at step {step}; "
                          f"expected finite numbers ({int(bad.any(1).sum())} step(s) affected). "
                          "Fix or drop this episode.")


def _fitting(stats: DatasetStatistics, episodes: list[Episode], where: str) -> DatasetStatistics:
    """Statistics read from a file, refused when their dimensions are not the data's (a 6-D file for 7-D actions
    would fail at the first batch, or normalise the wrong dimensions)."""
    actions = episodes[0].actions.shape[1]
    if len(stats.action.q01) != actions:
        raise SourceError(f"{where}: the action statistics have {len(stats.action.q01)} dimensions, the actions of "
                          f"{episodes[0].source} {actions}; give the statistics of this data (or data.statistics_path="
                          "null to compute them)")
    states = [ep.states for ep in episodes if ep.states is not None]
    if stats.proprio is not None and states and len(stats.proprio.mean) != states[0].shape[1]:
        raise SourceError(f"{where}: the proprio statistics have {len(stats.proprio.mean)} dimensions, the robot "
                          f"states of {episodes[0].source} {states[0].shape[1]}; give the statistics of this data")
    return stats


class EpisodeDataset(torch.utils.data.Dataset):
    """LARA training samples from the episodes of any mixture of sources: LIBERO HDF5, LeRobot datasets, video folders.

        data = EpisodeDataset(paths=["data/libero_object"], frame_gap=9, action_horizon=10, image_size=224)
        loader = DataLoader(data, batch_size=32, sampler=EpochShuffleSampler(data, seed=0), num_workers=4)
    """

    def __init__(self, config: LiberoDataConfig | None = None, **fields):
        if config is not None and fields:
            raise TypeError("pass either a LiberoDataConfig or its fields as keywords, not both.")
        self.config = config if config is not None else LiberoDataConfig(**fields)
        specs = self.config.sources
        formats = [spec.format or detect_format(spec.path) for spec in specs]
        self.sources: list[EpisodeSource] = [self._open(spec, format) for spec, format in zip(specs, formats)]
        self.episodes: list[Episode] = []
        self._source_of: list[int] = []  # episode -> index into self.sources
        self.split: list[dict] = []  # the label-scarce side each split source gave (RUN/data_split.json)
        for index, (spec, source) in enumerate(zip(specs, self.sources)):
            found = source.episodes()
            if spec.labelled_per_task is not None:
                found = self._side(spec, found)
            self.episodes += found
            self._source_of += [index] * len(found)
        self.weights = [spec.weight for spec in specs]
        if not self.episodes:
            raise SourceError(f"no readable episodes in {[str(s.path) for s in specs]}.")
        self._cameras = [self._camera_of(ep) for ep in self.episodes]
        self._gaps = [self._gap_of(ep) for ep in self.episodes]
        with_actions = [ep for ep in self.episodes if ep.actions is not None] if not self.config.action_free else []
        if with_actions and len(with_actions) < len(self.episodes):
            bare = next(ep for ep in self.episodes if ep.actions is None)
            raise SourceError(f"{bare.source} has no actions, {with_actions[0].source} has: samples of one dataset "
                              "need the same keys. Put action-free sources in pretrain.video_paths, or set "
                              "action_free=True.")
        self.statistics: DatasetStatistics | None = self._statistics(with_actions) if with_actions else None
        self._actions = [None if self.statistics is None or ep.actions is None else
                         normalize_actions(np.asarray(ep.actions), self.statistics.action).astype(np.float32)
                         for ep in self.episodes]
        self._states = [None if self.statistics is None or ep.states is None else
                        np.asarray(ep.states, dtype=np.float32) for ep in self.episodes]
        starts = [range(max(ep.length - k, 0)) if self.config.drop_incomplete else range(ep.length)
                  for ep, k in zip(self.episodes, self._gaps)]
        self._episode_of = np.concatenate([np.full(len(r), e, dtype=np.int64) for e, r in enumerate(starts)])
        self._t_of = np.concatenate([np.arange(len(r), dtype=np.int64) for r in starts])
        if all(ep.length <= k for ep, k in zip(self.episodes, self._gaps)):  # no (o_t, o_t+k) pair anywhere
            longest = max(ep.length for ep in self.episodes)
            raise SourceError(f"frame_gap={max(self._gaps)} (frames; frame_gap_s={self.config.frame_gap_s}) reaches "
                              f"past the end of every episode (the longest has {longest} frames): no sample would "
                              "have a future frame, so the LAM and alignment losses would be 0. Give a frame gap "
                              f"below {longest}, or longer episodes.")
        if len(self._t_of) == 0:
            longest = max(ep.length for ep in self.episodes)
            raise ValueError(f"no samples: with drop_incomplete every episode needs more than frame_gap="
                             f"{max(self._gaps)} frames, the longest has {longest}. Lower frame_gap or keep "
                             "incomplete samples.")

    def check_one_image_size(self) -> None:
        """With image_size=None frames are batched at their stored size, so every episode's camera must have one
        size: two sizes are refused here, before training, naming both and an episode of each (the first batch's
        stack would fail mid-run otherwise). Sizes come from the readers' `frame_size` (file metadata, nothing
        decoded) where a reader has it, else from each episode's first frame."""
        if self.config.image_size is not None:
            return
        for camera in (None, *self.config.extra_cameras):  # None: each episode's LAM camera
            seen: dict[tuple[int, int], Episode] = {}
            for index, episode in enumerate(self.episodes):
                name = self._cameras[index] if camera is None else camera
                seen.setdefault(_frame_size(episode, name), episode)
                if len(seen) > 1:
                    (first, a), (second, b) = seen.items()
                    role = "data.camera" if camera is None else f"data.extra_cameras {camera}"
                    raise SourceError(f"data.image_size=null keeps frames at their stored size, and the frames of "
                                      f"{role} differ: {first[0]}x{first[1]} in {a.source}, {second[0]}x{second[1]} "
                                      f"in {b.source}; set data.image_size (e.g. {min(first + second)}) to resize "
                                      "them all to one")

    # ---------------------------------------------------------------------------------------------
    # Building the index

    def _open(self, spec: SourceSpec, format: str) -> EpisodeSource:
        """One source, opened with the options its reader takes from this config (the reader's `options`)."""
        return open_source(spec.path, format, skip_bad_files=self.config.skip_bad_files,
                           **reader(format).options(self.config, spec))

    def _side(self, spec: SourceSpec, episodes: list[Episode]) -> list[Episode]:
        """The side of the source's label-scarce split this entry reads, recorded in `self.split`."""
        labelled, unlabelled = split_episodes(episodes, spec.labelled_per_task, spec.split_seed, str(spec.path))
        side = labelled if spec.episodes == "labelled" else unlabelled
        self.split.append({"path": str(spec.path), "labelled_per_task": spec.labelled_per_task,
                           "split_seed": spec.split_seed, "episodes": spec.episodes,
                           "action_free": spec.episodes == "unlabelled" or self.config.action_free,
                           "count": len(side), "ids": [episode_id(ep) for ep in side]})
        return side

    def _camera_of(self, episode: Episode) -> str:
        """The LAM camera of an episode: `camera`, or a single-camera source's only camera (a video)."""
        missing = [c for c in self.config.extra_cameras if c not in episode.cameras]
        if missing:
            raise SourceError(f"{episode.source}: no camera {missing[0]!r} (extra_cameras); available: "
                              f"{list(episode.cameras)}.")
        if self.config.camera in episode.cameras:
            return self.config.camera
        if len(episode.cameras) == 1:
            return episode.cameras[0]
        raise SourceError(f"{episode.source}: no camera {self.config.camera!r}; available: "
                          f"{list(episode.cameras)}. Set `camera` to one of them.")

    def _gap_of(self, episode: Episode) -> int:
        """k for this episode: frame_gap, or frame_gap_s seconds at the episode's own fps."""
        if self.config.frame_gap_s is None:
            return self.config.frame_gap
        if not episode.fps:
            raise SourceError(f"{episode.source}: frame_gap_s={self.config.frame_gap_s} needs the frame rate, "
                              "which this source does not give; use frame_gap (frames) instead.")
        return max(1, round(self.config.frame_gap_s * episode.fps))

    def _statistics(self, episodes: list[Episode]) -> DatasetStatistics:
        dims = {ep.actions.shape[1] for ep in episodes}
        if len(dims) > 1:
            first = {ep.actions.shape[1]: ep.source for ep in episodes}
            raise SourceError(f"episodes with different action sizes cannot be mixed: {first}.")
        gaps = {self._gaps[i] for i, ep in enumerate(self.episodes) if ep.actions is not None}
        if len(gaps) > 1:
            raise SourceError(f"frame_gap_s={self.config.frame_gap_s} gives different frame gaps {sorted(gaps)} "
                              "over episodes with actions (their fps differ): lam_actions would differ in length. "
                              "Use frame_gap (frames) or resample with fps.")
        for ep in episodes:
            _check_finite(ep, "actions", np.asarray(ep.actions))
            if ep.states is not None:
                _check_finite(ep, "states", np.asarray(ep.states))
        if self.config.statistics_path is not None:
            return _fitting(load_statistics(self.config.statistics_path, self.config.dataset_name), episodes,
                            f"data.statistics_path {self.config.statistics_path}")
        stored = [s.statistics() for s in self.sources]
        if len(self.sources) == 1 and stored[0] is not None and not self.split:  # a split's stored ones hold all
            return _fitting(stored[0], episodes, f"the statistics stored with {self.sources[0].path}")
        mask = GRIPPER_NOT_NORMALIZED if dims == {len(GRIPPER_NOT_NORMALIZED)} else None
        states = [ep.states for ep in episodes if ep.states is not None]
        return DatasetStatistics(
            action=ArrayStatistics.compute(np.concatenate([ep.actions for ep in episodes]), mask),
            proprio=ArrayStatistics.compute(np.concatenate(states)) if len(states) == len(episodes) else None,
            num_transitions=sum(ep.length for ep in episodes),
            num_trajectories=len(episodes),
        )

    def epoch_order(self, seed: int, epoch: int) -> list[int] | None:
        """Sample indices of one epoch when the order matters for speed or the mixture (videos decode a
        window once for many pairs; sources drawn by weight); None: a plain permutation serves."""
        videos = any(source.format == "video" for source in self.sources)
        if not videos and len(set(self.weights)) <= 1:
            return None
        window = self.config.window if videos else 1
        source_of_sample = np.asarray(self._source_of, dtype=np.int64)[self._episode_of]
        return window_order(self._episode_of, self._t_of, source_of_sample, self.weights, window, seed, epoch)

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

    def _frames(self, episode_index: int, camera: str, times: list[int]) -> torch.Tensor:
        """uint8 [len(times), 3, H, W], upright, centre-cropped (with `crop`) and resized (a view, maybe strided)."""
        frames = self.episodes[episode_index].frames(camera, times)  # (N, H, W, 3)
        frames = torch.from_numpy(frames).permute(0, 3, 1, 2)  # (N, 3, H, W)
        size = self.config.image_size
        if size is not None:
            size = (size, size) if isinstance(size, int) else tuple(size)
            if self.config.crop:
                frames = _centre_crop(frames, size[0] / size[1])
            if tuple(frames.shape[-2:]) != size:
                frames = F.interpolate(frames.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
                frames = frames.round().clamp(0, 255).to(torch.uint8)
        return frames  # a channels-first view when not resized: the collate's stack makes the one copy

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample {index} out of range for a dataset of {len(self)} samples.")
        index = int(index) % len(self)
        episode_index, t = int(self._episode_of[index]), int(self._t_of[index])
        episode, k = self.episodes[episode_index], self._gaps[episode_index]
        last = episode.length - 1
        frames = self._frames(episode_index, self._cameras[episode_index], [t, min(t + k, last)])  # (2, 3, H, W)
        sample = {
            "lam_frames": frames,
            "lam_valid": torch.tensor(t + k <= last),
            "image": frames[0],  # a view of o_t: the collate's stack copies it, as it copies lam_frames
            "instruction": episode.instruction,
            "episode_index": episode_index,
            "frame_index": t,
        }
        for camera in self.config.extra_cameras:
            sample[camera] = self._frames(episode_index, camera, [t])[0]
        actions = self._actions[episode_index]
        if actions is not None:
            sample["actions"], sample["action_mask"] = _chunk(actions, t, self.config.action_horizon)
            sample["lam_actions"], sample["lam_action_mask"] = _chunk(actions, t, k)
            if self._states[episode_index] is not None:
                sample["proprio"] = torch.from_numpy(self._states[episode_index][t].copy())
        return sample

    def close(self) -> None:
        """Close the file handles this process opened (they reopen on the next read)."""
        for source in self.sources:
            source.close()

    def __repr__(self) -> str:
        files = len({ep.path for ep in self.episodes})
        return (f"EpisodeDataset({len(self)} samples, {len(self.episodes)} episodes, {files} files, "
                f"camera={self.config.camera}, frame_gap={self.config.frame_gap}, "
                f"action_horizon={self.config.action_horizon}, action_free={self.config.action_free})")


def _frame_size(episode: Episode, camera: str) -> tuple[int, int]:
    """(H, W) of an episode's camera: its reader's `frame_size` when it has one, else its first frame's."""
    size = getattr(episode.reader, "frame_size", None)
    found = size(episode.key, camera) if size is not None else None
    return tuple(found) if found is not None else tuple(episode.frames(camera, [0]).shape[1:3])


def _centre_crop(frames: torch.Tensor, aspect: float) -> torch.Tensor:
    """The largest centred crop of [N, 3, H, W] frames with height / width = aspect."""
    H, W = frames.shape[-2:]
    if H / W > aspect:
        h = max(1, round(W * aspect))
        return frames[..., (H - h) // 2:(H - h) // 2 + h, :]
    w = max(1, round(H / aspect))
    return frames[..., (W - w) // 2:(W - w) // 2 + w]


def _chunk(actions: np.ndarray, t: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """actions[t : t+length], the last action repeated past the end; returns (chunk [length, D], mask [length])."""
    steps = np.arange(t, t + length)
    mask = steps < len(actions)
    chunk = actions[np.minimum(steps, len(actions) - 1)]  # (length, D)
    return torch.from_numpy(chunk), torch.from_numpy(mask)


LiberoDataset = EpisodeDataset  # its name from when it read LIBERO HDF5 only, kept for users' scripts and notebooks
