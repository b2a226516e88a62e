"""The statistics of a study: Wilson intervals for success rates, seed-level differences (the primary figure),
a prediction interval for a new seed, and a paired hierarchical bootstrap (a secondary figure).

Episodes are keyed by (seed, task, trial): `seed` is the training seed of a cell, and trial i of a task starts
from the benchmark's init state i in every variant, so the same key in two variants is the same evaluation
situation with a differently trained policy. That is what "paired" means here.

The unit of replication is the training seed (DESIGN.md §8): two policies trained with different seeds differ far
more than two evaluations of one policy. So a difference's primary figure (`seed_level_difference`) reduces each
seed to one number, d_s = success(variant, s) - success(baseline, s) over the same episodes, and reports their mean,
a t-interval with S - 1 degrees of freedom and an exact sign-flip p-value over the 2^S ways to flip the d_s (under
the null of no effect each d_s is as likely to have either sign). Simulated null studies (tests/study) keep its
false-positive rate at the nominal 5 %; the bootstrap below exceeds it with few seeds.

The bootstrap of a difference (secondary, labelled so in reports) resamples both sources of variation a study has, in two stages:
1. the training seeds, with replacement (S draws from the S paired seeds): a new policy per seed is the
   larger source of variation, and its uncertainty must not be hidden by many episodes;
2. within each drawn seed, its (task, trial) episodes, with replacement (E draws from its E episodes):
   which init states happened to be evaluated.
Each resample's statistic is the mean of the paired differences (variant - baseline) over its S x E drawn
episodes; the 95 % interval is the 2.5th and 97.5th percentile of 10 000 such statistics (a fixed RNG seed,
so a study's numbers do not move when it is re-read). The two stages are conservative: a seed's mean already
carries its episodes' noise, which stage 2 adds again, so when seeds agree the interval is up to sqrt(2)
wider than an episode-only one; with few seeds, stage 1 also has few distinct outcomes (27 for 3 seeds), and its percentile interval does not
widen as a t with S - 1 degrees of freedom does: with 3 seeds it excluded 0 in 15-18 % of simulated null studies.
"""

from __future__ import annotations

import itertools

import numpy as np

Z95 = 1.959963984540054  # the standard normal's 97.5th percentile
RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
_CHUNK = 500  # resamples drawn at once: bounds the index arrays at CHUNK x S x E
EXACT_SIGNFLIP_SEEDS = 16  # up to 2^16 sign patterns are enumerated; more seeds draw SIGNFLIP_DRAWS of them
SIGNFLIP_DRAWS = 100_000
SIGNFLIP_SEED = 0


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


def t_interval(values: np.ndarray, scale: float = 1.0) -> list[float] | None:
    """mean ± t(0.975, S - 1) · sd · scale of S values (None below 2 values: no spread to estimate).
    scale 1/sqrt(S): the interval of the mean; sqrt(1 + 1/S): a prediction interval for one new value."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return None
    from scipy import stats as scipy_stats  # here: `lara eval` records Wilson intervals without scipy's 1 s import

    half = scipy_stats.t.ppf(0.975, values.size - 1) * values.std(ddof=1) * scale
    return [float(values.mean() - half), float(values.mean() + half)]


def signflip_p(values: np.ndarray, draws: int = SIGNFLIP_DRAWS, seed: int = SIGNFLIP_SEED) -> float:
    """Two-sided sign-flip permutation p-value of mean(values) = 0: the share of sign patterns whose |mean| is at
    least the observed one. Exact (all 2^S patterns, the observed one among them) up to EXACT_SIGNFLIP_SEEDS values;
    above, `draws` random patterns plus the observed one ((hits + 1) / (draws + 1))."""
    values = np.asarray(values, dtype=np.float64)
    observed = abs(values.mean()) - 1e-12  # ties count as at least as extreme, whatever the float rounding
    if values.size <= EXACT_SIGNFLIP_SEEDS:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=values.size)))  # (2^S, S)
        return float((np.abs(signs @ values / values.size) >= observed).mean())
    signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(draws, values.size))  # (draws, S)
    hits = int((np.abs(signs @ values / values.size) >= observed).sum())
    return (hits + 1) / (draws + 1)


def seed_level_difference(variant: dict[tuple, bool], baseline: dict[tuple, bool]) -> dict:
    """The primary figure of a comparison, at the level of the training seed: per seed s, d_s = the variant's
    success minus the baseline's over the same (task, trial) episodes; their mean, a 95 % t-interval with S - 1
    degrees of freedom (None with one seed), the exact sign-flip p-value and every d_s (`per_seed`)."""
    seeds, diffs = paired_differences(variant, baseline)  # (S, E)
    per_seed = diffs.mean(axis=1)  # (S,) d_s
    ci = t_interval(per_seed, 1 / np.sqrt(per_seed.size))
    return {"method": "seed_t", "mean": float(per_seed.mean()), "ci95": ci, "p_signflip": signflip_p(per_seed),
            "per_seed": {str(s): float(d) for s, d in zip(seeds, per_seed)}, "paired_seeds": seeds,
            "paired_episodes": int(diffs.size), "excludes_zero": bool(ci is not None and (ci[0] > 0 or ci[1] < 0)),
            "only_variant": int((diffs > 0).sum()), "only_baseline": int((diffs < 0).sum())}


def prediction_interval(rates: list[float]) -> list[float] | None:
    """Where a new training seed's success rate is expected to fall (95 %), from S seeds' rates:
    mean ± t(0.975, S - 1) · sd · sqrt(1 + 1/S), cut to [0, 1] where it reaches past a rate; None below 2 seeds."""
    interval = t_interval(np.asarray(rates, dtype=np.float64), np.sqrt(1 + 1 / len(rates)))
    return None if interval is None else [max(interval[0], 0.0), min(interval[1], 1.0)]


def compare(variant: dict[tuple, bool], baseline: dict[tuple, bool]) -> dict:
    """A difference as study.json holds it: the seed-level figures at the top, the hierarchical bootstrap (a
    secondary figure) under `bootstrap`."""
    return {**seed_level_difference(variant, baseline), "bootstrap": paired_difference(variant, baseline)}
