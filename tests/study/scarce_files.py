"""Tiny LIBERO-format demonstrations of two tasks for the label-scarce tests: enough episodes per task to split."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from lara.data.libero_writer import LiberoHDF5Writer

TASKS = ("put the bowl on the plate", "open the drawer")


def write_tasks(directory: Path, episodes: int | tuple[int, ...], size: int = 32, length: int = 14) -> Path:
    """One file per task with `episodes` demos (per task, or one number for each): a square drifting across the
    image, actions = its drift."""
    counts = episodes if isinstance(episodes, tuple) else (episodes,) * len(TASKS)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for task, language in enumerate(TASKS):
        with LiberoHDF5Writer(directory / f"task{task}_demo.hdf5", language=language) as writer:
            for _ in range(counts[task]):
                drift = rng.uniform(-1, 1, size=2)
                xy = np.clip(8 + np.cumsum(np.tile(drift, (length, 1)), 0), 0, size - 7).astype(int)
                frames = np.full((length, size, size, 3), 40, np.uint8)
                for t, (x, y) in enumerate(xy):
                    frames[t, y : y + 6, x : x + 6] = (230, 60, 30)
                actions = np.zeros((length, 7))
                actions[:, :2] = drift + rng.normal(0, 0.05, size=(length, 2))
                actions[:, 6] = np.where(np.arange(length) > length // 2, 1.0, -1.0)
                writer.add_demo(actions=actions, agentview_rgb=frames, eye_in_hand_rgb=frames[:, ::-1].copy(),
                                ee_states=rng.normal(size=(length, 6)), gripper_states=rng.normal(size=(length, 2)),
                                joint_states=rng.normal(size=(length, 7)), attrs={"success": True})
    return directory


def poison(directory: Path, ids: list[dict]) -> None:
    """Overwrite the actions and states of the given episodes ({file, episode} as RUN/data_split.json records
    them) with NaN: any of them reaching a statistic, a loss or a gradient makes it NaN (the writer refuses NaN,
    so the files are edited after writing)."""
    for record in ids:
        with h5py.File(directory / Path(record["file"]).name, "r+") as handle:
            demo = handle[record["episode"]]
            for key in ("actions", "obs/ee_states", "obs/gripper_states"):
                demo[key][...] = np.nan
