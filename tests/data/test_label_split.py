"""The label-scarce split of a source (SourceSpec.labelled_per_task): K per task, seeded, disjoint, recorded,
the unlabelled side read without its actions; and its errors."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from lara.data import EpisodeDataset, SourceError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "study"))

from scarce_files import TASKS, poison, write_tasks  # noqa: E402


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Path:
    return write_tasks(tmp_path_factory.mktemp("scarce") / "demos", episodes=6, size=16, length=12)


def side(demos: Path, episodes: str, k: int = 2, seed: int = 0, **config) -> EpisodeDataset:
    return EpisodeDataset(paths=[{"path": str(demos), "labelled_per_task": k, "episodes": episodes,
                                 "split_seed": seed}], **config)


def ids(data: EpisodeDataset) -> set[tuple[str, str]]:
    return {(record["file"], record["episode"]) for record in data.split[0]["ids"]}


def test_k_per_task_labelled_the_rest_unlabelled_disjoint_and_recorded(demos):
    labelled, unlabelled = side(demos, "labelled"), side(demos, "unlabelled")
    assert Counter(ep.instruction for ep in labelled.episodes) == {task: 2 for task in TASKS}
    assert Counter(ep.instruction for ep in unlabelled.episodes) == {task: 4 for task in TASKS}
    assert not ids(labelled) & ids(unlabelled) and len(ids(labelled) | ids(unlabelled)) == 12
    assert ids(labelled) == {(str(ep.path), ep.source.split(" ", 1)[1]) for ep in labelled.episodes}
    record = labelled.split[0]
    assert [record[key] for key in ("labelled_per_task", "split_seed", "episodes", "count")] == [2, 0, "labelled", 4]
    assert record["action_free"] is False and unlabelled.split[0]["action_free"] is True


def test_the_split_is_seeded_and_the_same_whichever_way_the_source_is_opened(demos):
    assert ids(side(demos, "labelled", seed=0)) == ids(side(demos, "labelled", seed=0, action_free=True))
    splits = {frozenset(ids(side(demos, "labelled", seed=seed))) for seed in range(4)}
    assert len(splits) > 1  # another seed, another choice of labelled episodes
    assert EpisodeDataset(paths=[str(demos)]).split == []  # no split, nothing recorded


def test_an_unlabelled_side_never_reads_an_action(tmp_path):
    demos = write_tasks(tmp_path / "demos", episodes=4, size=16, length=12)
    poison(demos, side(demos, "unlabelled").split[0]["ids"])  # NaN actions and states in every unlabelled episode
    with pytest.raises(SourceError, match="expected finite numbers"):
        EpisodeDataset(paths=[str(demos)])  # the poison is there: reading every action finds it
    labelled, unlabelled = side(demos, "labelled"), side(demos, "unlabelled")
    assert unlabelled.statistics is None and "lam_actions" not in unlabelled[0] and "proprio" not in unlabelled[0]
    assert np.isfinite(labelled.statistics.action.q01).all() and labelled.statistics.num_trajectories == 4


def test_a_task_with_fewer_episodes_than_k_is_named(tmp_path):
    demos = write_tasks(tmp_path / "demos", episodes=(3, 2), size=16, length=12)
    assert len(side(demos, "unlabelled", k=2).episodes) == 1
    with pytest.raises(SourceError, match=r"task 'open the drawer' has 2 episodes, fewer than labelled_per_task=3"):
        side(demos, "labelled", k=3)


@pytest.mark.parametrize("entry, message", [
    ({"episodes": "labelled"}, "episodes='labelled' reads one side of a label-scarce split; set labelled_per_task"),
    ({"labelled_per_task": 2}, "labelled_per_task=2 splits the source; say which side this entry reads"),
    ({"labelled_per_task": 0, "episodes": "labelled"}, "greater than or equal to 1"),
])
def test_a_side_without_a_split_or_a_split_without_a_side_is_one_error(demos, entry, message):
    with pytest.raises(ValidationError, match=message) as error:
        EpisodeDataset(paths=[{"path": str(demos), **entry}])
    assert error.value.error_count() == 1  # the entry's own error, not one per member of the path-or-entry union
