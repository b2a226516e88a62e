"""The statistics of a study: Wilson intervals for success rates, a paired hierarchical bootstrap for differences.

Episodes are keyed by (seed, task, trial): `seed` is the training seed of a cell, and trial i of a task starts
from the benchmark's init state i in every variant, so the same key in two variants is the same evaluation
situation with a differently trained policy. That is what "paired" means here.

The bootstrap of a difference resamples both sources of variation a study has, in two stages:
1. the training seeds, with replacement (S draws from the S paired seeds): a new policy per seed is the
   larger source of variation, and its uncertainty must not be hidden by many episodes;
2. within each drawn seed, its (task, trial) episodes, with replacement (E draws from its E episodes):
   which init states happened to be evaluated.
Each resample's statistic is the mean of the paired differences (variant - baseline) over its S x E drawn
episodes; the 95 % interval is the 2.5th and 97.5th percentile of 10 000 such statistics (a fixed RNG seed,
so a study's numbers do not move when it is re-read). The two stages are conservative: a seed's mean already
carries its episodes' noise, which stage 2 adds again, so when seeds agree the interval is up to sqrt(2)
wider than an episode-only one; with few seeds, stage 1 also has few distinct outcomes (27 for 3 seeds).
"""

from __future__ import annotations

import numpy as np

Z95 = 1.959963984540054  # the standard normal's 97.5th percentile
RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
_CHUNK = 500  # resamples drawn at once: bounds the index arrays at CHUNK x S x E


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion k/n (95 % by default).

    Unlike the normal approximation it stays inside [0, 1] and is not of zero width at k = 0 or k = n.
    """
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"a success count needs 0 <= k <= n and n >= 1, got k={k}, n={n}")
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, float(centre - half)), min(1.0, float(centre + half))


def success_summary(episodes: dict[tuple, bool]) -> dict:
    """A variant's episodes {(seed, task, trial): success} -> pooled mean with its Wilson interval, per-seed rates."""
    if not episodes:
        raise ValueError("a variant needs at least one evaluated episode to summarise, got none")
    k, n = sum(map(bool, episodes.values())), len(episodes)
    seeds = sorted({key[0] for key in episodes})
    per_seed = {}
    for seed in seeds:
        values = [bool(v) for key, v in episodes.items() if key[0] == seed]
        per_seed[seed] = {"rate": sum(values) / len(values), "k": sum(values), "n": len(values)}
    return {"mean": k / n, "ci95": list(wilson_interval(k, n)), "k": k, "n": n, "per_seed": per_seed}


def paired_differences(variant: dict[tuple, bool], baseline: dict[tuple, bool]) -> tuple[list, np.ndarray]:
    """The paired differences as a [seeds, episodes] array (variant - baseline, each -1, 0 or 1).

    Seeds in both variants are kept, and the (task, trial) episodes that every kept seed has in both
    (all of them, unless a cell's evaluation is incomplete), so that every seed weighs the same."""
    seeds = sorted({k[0] for k in variant} & {k[0] for k in baseline})
    shared = None
    for seed in seeds:
        here = {k[1:] for k in variant if k[0] == seed} & {k[1:] for k in baseline if k[0] == seed}
        shared = here if shared is None else shared & here
    episodes = sorted(shared or ())
    if not seeds or not episodes:
        raise ValueError("no (seed, task, trial) episode was evaluated in both variants, so nothing can be paired; "
                         "both need cells with the same seeds, tasks and trials")
    diffs = np.array([[float(variant[(s, *e)]) - float(baseline[(s, *e)]) for e in episodes] for s in seeds])
    return seeds, diffs  # (S, E)


def hierarchical_bootstrap(diffs: np.ndarray, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """`resamples` bootstrap means of a [seeds, episodes] array: seeds drawn with replacement, then each drawn
    seed's episodes drawn with replacement (independently for every draw, also of a repeated seed)."""
    diffs = np.asarray(diffs, dtype=np.float64)
    if diffs.ndim != 2 or 0 in diffs.shape:
        raise ValueError(f"expected paired differences as a non-empty [seeds, episodes] array, got shape {diffs.shape}")
    n_seeds, n_episodes = diffs.shape
    rng = np.random.default_rng(seed)
    means = []
    for start in range(0, resamples, _CHUNK):
        b = min(_CHUNK, resamples - start)
        seed_draws = rng.integers(0, n_seeds, size=(b, n_seeds))  # (b, S)
        episode_draws = rng.integers(0, n_episodes, size=(b, n_seeds, n_episodes))  # (b, S, E)
        means.append(diffs[seed_draws[:, :, None], episode_draws].mean(axis=(1, 2)))  # (b,)
    return np.concatenate(means)


def paired_difference(variant: dict[tuple, bool], baseline: dict[tuple, bool], resamples: int = RESAMPLES,
                      seed: int = BOOTSTRAP_SEED) -> dict:
    """Mean paired difference in success (variant - baseline), its hierarchical bootstrap 95 % interval and the
    discordant episodes: solved only by the variant (`only_variant`) or only by the baseline (`only_baseline`)."""
    seeds, diffs = paired_differences(variant, baseline)
    means = hierarchical_bootstrap(diffs, resamples, seed)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"mean": float(diffs.mean()), "ci95": [float(low), float(high)], "paired_episodes": int(diffs.size),
            "paired_seeds": seeds, "excludes_zero": bool(low > 0 or high < 0),
            "only_variant": int((diffs > 0).sum()), "only_baseline": int((diffs < 0).sum())}
