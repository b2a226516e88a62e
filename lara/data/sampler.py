"""Seeded, epoch-aware sample orders: the same seed and epoch always give the same order."""

from __future__ import annotations

from collections.abc import Iterator, Sized

import numpy as np
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
        self._order = getattr(data, "epoch_order", None)  # window-grouped / weighted order of a video mixture

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def permutation(self, epoch: int) -> torch.Tensor:
        order = self._order(self.seed, epoch) if self._order is not None else None
        if order is not None:
            return torch.tensor(order, dtype=torch.int64)
        generator = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.num_samples, generator=generator)

    def __iter__(self) -> Iterator[int]:
        order = self.permutation(self.epoch)
        self.epoch += 1
        return iter(order.tolist())

    def __len__(self) -> int:
        return self.num_samples


def window_order(episode_of: np.ndarray, t_of: np.ndarray, source_of: np.ndarray, weights: list[float],
                 window: int, seed: int, epoch: int) -> list[int]:
    """One epoch of sample indices, shuffled window by window, with sources drawn by mixture weight.

    Samples of one episode whose start t falls in the same `window` frames form a chunk; chunks come in
    random order and samples in random order within a chunk, so a reader that decodes a window once
    serves the whole chunk. Source s contributes round(N * n_s w_s / sum(n w)) samples (N = all samples,
    n_s its own): whole passes over its chunks, then part of one more. Deterministic in (seed, epoch).
    """
    rng = np.random.default_rng([seed, epoch])
    keys = episode_of.astype(np.int64) * (int(t_of.max()) // window + 1) + t_of // window
    order = np.argsort(keys, kind="stable")
    bounds = np.flatnonzero(np.diff(keys[order])) + 1
    chunks = np.split(order, bounds)  # sample indices of each (episode, window)
    chunk_source = np.array([source_of[c[0]] for c in chunks])
    sizes = np.bincount(source_of, minlength=len(weights)).astype(np.float64)
    shares = sizes * np.asarray(weights, dtype=np.float64)
    quotas = np.floor(len(episode_of) * shares / shares.sum()).astype(np.int64)
    quotas[np.argmax(shares)] += len(episode_of) - quotas.sum()  # the rounding remainder to the largest
    picked = []
    for source, quota in enumerate(quotas):
        own = [chunks[i] for i in np.flatnonzero(chunk_source == source)]
        while quota > 0:
            for i in rng.permutation(len(own)):
                chunk = rng.permutation(own[i])[:quota]
                picked.append(chunk)
                quota -= len(chunk)
                if quota == 0:
                    break
    return np.concatenate([picked[i] for i in rng.permutation(len(picked))]).tolist()
