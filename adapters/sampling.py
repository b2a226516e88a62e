"""The data order as a pure function of the micro-step: exact resume and DDP sharding come for free.

Micro-step m draws its *global* batch (batch_size x world_size samples) from one source (demonstrations,
or every `video_every`-th step the action-free videos); each source walks through its own seeded
permutations, epoch after epoch. Process r takes the r-th slice of the global batch, so 2 processes with
batch B see exactly the samples 1 process with batch 2B sees. Resuming at micro-step m replays the
same order from there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch


class SourceStream:
    """Sample indices of one source: permutation of epoch e drawn from seed + e, concatenated.

    order: the dataset's own `epoch_order(seed, epoch)` (video windows, mixture weights), used where it
    returns an order of `size` indices instead of None.
    """

    def __init__(self, size: int, seed: int, order: Callable[[int, int], list[int] | None] | None = None):
        if size < 1:
            raise ValueError("a data source with no samples cannot be sampled")
        self.size, self.seed, self.order = size, seed, order
        self._cached: tuple[int, list[int]] | None = None

    def _epoch(self, epoch: int) -> list[int]:
        if self._cached is None or self._cached[0] != epoch:
            order = self.order(self.seed, epoch) if self.order is not None else None
            if order is None:
                generator = torch.Generator().manual_seed(self.seed + epoch)
                order = torch.randperm(self.size, generator=generator).tolist()
            self._cached = (epoch, order)
        return self._cached[1]

    def take(self, start: int, count: int) -> list[int]:
        """Indices at stream positions [start, start + count)."""
        return [self._epoch(p // self.size)[p % self.size] for p in range(start, start + count)]


class StepBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of indices into `ConcatDataset([demos, videos])` for micro-steps start_step, start_step+1, ...

    sizes: samples per source (demos first; a second source is the action-free video set, or absent).
    orders: per source, its dataset's `epoch_order` (or None for a plain permutation).
    """

    def __init__(self, sizes: list[int], batch_size: int, *, seed: int, world_size: int = 1, rank: int = 0,
                 video_every: int = 0, start_step: int = 0, total_steps: int | None = None,
                 orders: list | None = None):
        if len(sizes) > 1 and video_every < 1:
            raise ValueError("a video source needs video_every >= 1 (every N-th micro-step draws from it)")
        orders = orders or [None] * len(sizes)
        self.streams = [SourceStream(size, seed + 1000003 * i, order)
                        for i, (size, order) in enumerate(zip(sizes, orders))]
        self.offsets = [sum(sizes[:i]) for i in range(len(sizes))]
        self.batch_size, self.world_size, self.rank = batch_size, world_size, rank
        self.video_every = video_every if len(sizes) > 1 else 0
        self.start_step, self.total_steps = start_step, total_steps

    def source_position(self, step: int) -> tuple[int, int]:
        """(source, how many earlier micro-steps drew from that source) for micro-step `step`."""
        if self.video_every == 0:
            return 0, step
        videos_before = step // self.video_every
        if step % self.video_every == self.video_every - 1:
            return 1, videos_before
        return 0, step - videos_before

    def batch(self, step: int) -> list[int]:
        source, drawn = self.source_position(step)
        global_batch = self.batch_size * self.world_size
        start = drawn * global_batch + self.rank * self.batch_size
        return [self.offsets[source] + i for i in self.streams[source].take(start, self.batch_size)]

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        while self.total_steps is None or step < self.total_steps:
            yield self.batch(step)
            step += 1

    def __len__(self) -> int:
        if self.total_steps is None:
            raise TypeError("an endless StepBatchSampler has no length")
        return max(self.total_steps - self.start_step, 0)
