"""A seeded, epoch-aware shuffling sampler: the same seed and epoch always give the same order."""

from __future__ import annotations

from collections.abc import Iterator, Sized

import torch


class EpochShuffleSampler(torch.utils.data.Sampler[int]):
    """A fresh permutation of range(len(data)) per epoch, drawn from `seed + epoch`.

    Each pass over the sampler advances the epoch by one, so a plain `for epoch in ...` loop reshuffles;
    call `set_epoch(e)` when resuming a run to replay epoch e's order exactly.
    """

    def __init__(self, data: Sized, seed: int = 0):
        self.num_samples = len(data)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def permutation(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.num_samples, generator=generator)

    def __iter__(self) -> Iterator[int]:
        order = self.permutation(self.epoch)
        self.epoch += 1
        return iter(order.tolist())

    def __len__(self) -> int:
        return self.num_samples
