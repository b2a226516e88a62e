"""The study's statistics against values computed by hand or by exact enumeration."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lara.benchmarks.study import stats


def episodes(table: dict[int, list[int]]) -> dict[tuple, bool]:
    """{seed: [success per episode]} -> {(seed, task, trial): success}, with 5 trials per task."""
    return {(seed, i // 5, i % 5): bool(s) for seed, row in table.items() for i, s in enumerate(row)}


@pytest.mark.parametrize("k, n, expected", [(0, 10, (0.0, 0.2775)), (5, 10, (0.2366, 0.7634)),
                                            (10, 10, (0.7225, 1.0)), (1, 20, (0.0089, 0.2361))])
def test_wilson_matches_hand_computed_intervals(k, n, expected):
    assert stats.wilson_interval(k, n) == pytest.approx(expected, abs=5e-5)


def test_wilson_rejects_impossible_counts():
    with pytest.raises(ValueError, match="0 <= k <= n and n >= 1"):
        stats.wilson_interval(3, 0)
    with pytest.raises(ValueError, match="k=11, n=10"):
        stats.wilson_interval(11, 10)


def test_success_summary_pools_episodes_and_keeps_per_seed_rates():
    summary = stats.success_summary(episodes({0: [1] * 5 + [0] * 5, 1: [1] * 10}))
    assert (summary["k"], summary["n"], summary["mean"]) == (15, 20, 0.75)
    assert summary["ci95"] == pytest.approx(stats.wilson_interval(15, 20))
    assert summary["per_seed"] == {0: {"rate": 0.5, "k": 5, "n": 10}, 1: {"rate": 1.0, "k": 10, "n": 10}}


def test_equal_differences_give_a_degenerate_interval_at_that_value():
    always, never = episodes({s: [1] * 10 for s in range(3)}), episodes({s: [0] * 10 for s in range(3)})
    assert stats.paired_difference(always, never) | {"paired_seeds": None} == {
        "mean": 1.0, "ci95": [1.0, 1.0], "paired_episodes": 30, "paired_seeds": None, "excludes_zero": True,
        "only_variant": 30, "only_baseline": 0}
    mixed = episodes({s: [1, 0] * 5 for s in range(3)})
    assert stats.paired_difference(mixed, mixed)["ci95"] == [0.0, 0.0]  # identical policies: no difference


def test_swapping_the_variants_mirrors_the_interval_exactly():
    a = episodes({0: [1, 1, 0, 1, 0, 1, 1, 0, 1, 1], 1: [0, 1, 1, 0, 0, 1, 0, 1, 1, 1]})
    b = episodes({0: [0, 1, 0, 0, 0, 1, 0, 0, 1, 0], 1: [0, 0, 1, 0, 1, 0, 0, 1, 0, 1]})
    ab, ba = stats.paired_difference(a, b), stats.paired_difference(b, a)
    assert ab["mean"] == pytest.approx(-ba["mean"]) == pytest.approx(0.3)  # (13 - 7) / 20
    assert ab["ci95"] == pytest.approx([-ba["ci95"][1], -ba["ci95"][0]])  # the same draws, negated


def test_a_symmetric_case_centres_on_zero():
    # per seed: 20 episodes better, 20 worse, 20 the same
    better = episodes({s: [1] * 20 + [0] * 20 + [1] * 20 for s in range(4)})
    worse = episodes({s: [0] * 20 + [1] * 20 + [1] * 20 for s in range(4)})
    diff = stats.paired_difference(better, worse)
    low, high = diff["ci95"]
    assert diff["mean"] == 0.0 and low < 0 < high and not diff["excludes_zero"]
    assert abs(low + high) < 0.02


def test_the_bootstrap_is_deterministic_under_its_seed():
    diffs = np.random.default_rng(3).integers(-1, 2, size=(3, 40)).astype(float)
    assert np.array_equal(stats.hierarchical_bootstrap(diffs), stats.hierarchical_bootstrap(diffs))
    assert not np.array_equal(stats.hierarchical_bootstrap(diffs, seed=0), stats.hierarchical_bootstrap(diffs, seed=1))


def test_episode_resampling_matches_the_standard_error_of_a_mean():
    # one seed: only episodes are resampled, so the bootstrap means spread as sd / sqrt(E) around the mean
    row = np.array([1.0] * 30 + [0.0] * 50 + [-1.0] * 20)  # (1, 100)
    means = stats.hierarchical_bootstrap(row[None])
    assert means.mean() == pytest.approx(row.mean(), abs=0.004)  # 4 standard errors of the bootstrap's own mean
    assert means.std() == pytest.approx(row.std() / np.sqrt(row.size), rel=0.05)


def test_seed_resampling_matches_the_exact_distribution():
    # each seed's episodes agree, so only the seed draws matter: 3 draws from {0, 0.5, 1}, enumerated exactly
    values = np.array([0.0, 0.5, 1.0])
    diffs = np.repeat(values[:, None], 8, axis=1)  # (3 seeds, 8 episodes)
    exact = {}
    for draw in itertools.product(values, repeat=3):
        exact[round(float(np.mean(draw)), 6)] = exact.get(round(float(np.mean(draw)), 6), 0) + 1 / 27
    means = np.round(stats.hierarchical_bootstrap(diffs), 6)
    assert set(np.unique(means)) <= set(exact)
    for value, probability in exact.items():
        assert np.mean(means == value) == pytest.approx(probability, abs=0.015)


def test_pairing_keeps_only_episodes_both_variants_have():
    a = episodes({0: [1] * 10, 1: [1] * 10, 2: [1] * 10})
    b = episodes({0: [0] * 10, 1: [0] * 10})
    del b[(1, 1, 4)]  # an incomplete evaluation: that episode goes for every seed, so seeds weigh the same
    seeds, diffs = stats.paired_differences(a, b)
    assert seeds == [0, 1] and diffs.shape == (2, 9)
    with pytest.raises(ValueError, match="nothing can be paired"):
        stats.paired_differences(a, episodes({5: [0] * 10}))
