"""A reader plugs in without editing the data core: it declares the settings it takes from the data config
(`options`) and is named by its module in a source entry; the core cuts its episodes like any other."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
from pydantic import ValidationError

from lara.data import EpisodeDataset, LiberoDataset, LiberoDataConfig

READER = '''
from pathlib import Path

import numpy as np

from lara.data.episodes import Episode


def options(config, spec):
    return {"camera": config.camera, "instruction": spec.path.stem.replace("_", " ")}


def open_source(path, *, skip_bad_files=False, camera, instruction):
    return NpzSource(Path(path), camera, instruction)


class NpzSource:
    format = "toy_readers.npz"

    def __init__(self, path, camera, instruction):
        self.path, self.camera, self.instruction = path, camera, instruction

    def episodes(self):
        data = np.load(self.path)
        return [Episode(source=f"{self.path.name} episode {i}", path=self.path, key=i, length=len(data[f"frames{i}"]),
                        fps=None, instruction=self.instruction, cameras=(self.camera,), actions=data[f"actions{i}"],
                        states=None, reader=self) for i in range(2)]

    def read_frames(self, key, camera, indices):
        return np.load(self.path)[f"frames{key}"][indices]

    def statistics(self):
        return None

    def close(self):
        pass
'''


def test_a_reader_outside_the_core_is_read_by_naming_its_module(tmp_path, monkeypatch):
    package = tmp_path / "readers" / "toy_readers"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "npz.py").write_text(textwrap.dedent(READER))
    monkeypatch.syspath_prepend(str(tmp_path / "readers"))
    rng = np.random.default_rng(0)
    frames = {f"frames{i}": rng.integers(0, 255, (T, 16, 16, 3), dtype=np.uint8) for i, T in enumerate((6, 5))}
    actions = {f"actions{i}": rng.uniform(-1, 1, (T, 7)) for i, T in enumerate((6, 5))}
    np.savez(tmp_path / "push_the_block.npz", **frames, **actions)

    data = EpisodeDataset(paths=[{"path": tmp_path / "push_the_block.npz", "format": "toy_readers.npz"}], frame_gap=2,
                          action_horizon=3, image_size=16, camera="front")
    assert LiberoDataset is EpisodeDataset and len(data) == 6 + 5
    sample = data[8]  # episode 1, t = 2
    assert (sample["episode_index"], sample["frame_index"]) == (1, 2) and sample["instruction"] == "push the block"
    expected = frames["frames1"][[2, 4]].transpose(0, 3, 1, 2)  # (o_t, o_{t+k}) as [2, 3, H, W]
    assert np.array_equal(sample["lam_frames"].numpy(), expected) and bool(sample["lam_valid"])
    assert sample["actions"].shape == (3, 7) and data.statistics.num_trajectories == 2


def test_an_unknown_reader_name_is_refused_naming_the_known_ones():
    with pytest.raises(ValidationError, match=r"format 'rlds': expected one of \['lerobot', 'libero_hdf5', 'video'\]"):
        LiberoDataConfig(paths=[{"path": "data/x", "format": "rlds"}])
