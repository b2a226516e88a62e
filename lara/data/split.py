"""The label-scarce split of a source (`SourceSpec.labelled_per_task`): K episodes of each task keep their actions.

    labelled, unlabelled = split_episodes(source.episodes(), labelled_per_task=5, seed=0, where="data/ref_object64")

A task is an instruction. Each task's episodes, in the reader's stable order, are shuffled by a generator seeded
with (seed, crc32 of the instruction), so a task's split depends on its own episodes and the seed alone (adding a
task to the source leaves the others' splits as they were); the first K are labelled. Both sides of a split come
from the same episode list, so an entry reading 'labelled' and one reading 'unlabelled' of the same source, seed
and K are disjoint and together the whole source, whether the reader opened it with actions or action-free.
"""

from __future__ import annotations

import zlib

import numpy as np

from .episodes import Episode, SourceError


def split_episodes(episodes: list[Episode], labelled_per_task: int, seed: int,
                   where: str) -> tuple[list[Episode], list[Episode]]:
    """(labelled, unlabelled) episodes, each in the reader's order; `where` names the source in errors."""
    tasks: dict[str, list[int]] = {}  # instruction -> indices into episodes, in the reader's order
    for index, episode in enumerate(episodes):
        tasks.setdefault(episode.instruction, []).append(index)
    labelled = set()
    for instruction, members in tasks.items():
        if len(members) < labelled_per_task:
            raise SourceError(f"{where}: task {instruction!r} has {len(members)} episodes, fewer than "
                              f"labelled_per_task={labelled_per_task}; lower labelled_per_task or add episodes")
        rng = np.random.default_rng([seed, zlib.crc32(instruction.encode())])
        labelled.update(members[i] for i in rng.permutation(len(members))[:labelled_per_task])
    return ([ep for i, ep in enumerate(episodes) if i in labelled],
            [ep for i, ep in enumerate(episodes) if i not in labelled])


def episode_id(episode: Episode) -> dict:
    """The file and the episode inside it (LIBERO: its demo key, e.g. data/demo_3), as the split records them."""
    return {"file": str(episode.path), "episode": episode.source.removeprefix(f"{episode.path} ")}
