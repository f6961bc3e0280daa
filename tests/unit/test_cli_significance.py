"""The paired bootstrap against distributions worked out by hand, and on runs that differ only by seed."""

from __future__ import annotations

import random

import pytest

from cotlab.cli.significance import paired_bootstrap


def test_problem_level_resampling_matches_the_hand_computed_distribution() -> None:
    # Samples never vary within a problem here, so only the problem draw is random. The per-problem differences are
    # 0 (p1) and 1 (p2); drawing 2 problems with replacement gives mean 0, 1/2 or 1 with probabilities 1/4, 1/2, 1/4.
    baseline = {"p1": [True, True], "p2": [False, False]}
    other = {"p1": [True, True], "p2": [True, True]}
    got = paired_bootstrap(baseline, other, replicates=4000, seed=1)
    assert got.value == 0.5 and got.problems == 2
    # P(0) = 1/4 > 2.5%, so the 2.5% quantile is 0 and the 97.5% one is 1: the interval touches 0.
    assert (got.low, got.high) == (0.0, 1.0)
    assert not got.significant


def test_sample_level_resampling_matches_the_hand_computed_distribution() -> None:
    # One problem: the baseline got 1 of 2 samples right, the other 2 of 2. Resampling the baseline's two samples
    # gives 0, 1 or 2 right with probabilities 1/4, 1/2, 1/4; the other always 2. Differences 1, 1/2, 0.
    got = paired_bootstrap({"p": [True, False]}, {"p": [True, True]}, replicates=4000, seed=2)
    assert got.value == 0.5
    assert (got.low, got.high) == (0.0, 1.0)


def test_replicate_quantiles_sit_where_the_hand_computed_distribution_puts_them() -> None:
    # The same case: differences 0, 1/2, 1 with cumulative probabilities 1/4, 3/4, 1. So the 30% and 70% quantiles
    # are both 1/2, while the 20% one is 0 and the 80% one is 1 (40,000 seeded replicates leave no doubt).
    case = ({"p": [True, False]}, {"p": [True, True]})
    middle = paired_bootstrap(*case, replicates=40000, seed=3, confidence=0.4)
    assert (middle.low, middle.high) == (0.5, 0.5)
    wider = paired_bootstrap(*case, replicates=40000, seed=3, confidence=0.6)
    assert (wider.low, wider.high) == (0.0, 1.0)


def test_pairing_drops_problems_only_one_run_scored() -> None:
    got = paired_bootstrap({"a": [True], "b": [False]}, {"a": [True], "c": [True]}, replicates=100)
    assert got.problems == 1 and got.value == 0.0 and (got.low, got.high) == (0.0, 0.0)
    with pytest.raises(ValueError, match="share no problem"):
        paired_bootstrap({"a": [True]}, {"b": [True]})


def _run(probabilities: list[float], samples: int, seed: int) -> dict[str, list[bool]]:
    """A model that gets problem i right with probability p_i, sampled `samples` times with `seed`."""
    rng = random.Random(seed)
    return {f"p{i}": [rng.random() < p for _ in range(samples)] for i, p in enumerate(probabilities)}


# A tiny benchmark: 12 problems from easy to hard, 8 samples each (a small "many-sample" evaluation).
TINY = [0.9, 0.8, 0.75, 0.6, 0.5, 0.5, 0.4, 0.3, 0.25, 0.2, 0.1, 0.05]


def test_same_model_with_different_seeds_is_not_significant() -> None:
    got = paired_bootstrap(_run(TINY, 8, seed=1), _run(TINY, 8, seed=2), seed=0)
    assert got.low <= 0.0 <= got.high and not got.significant
    assert got.value != 0.0  # the seeds did produce different samples


def test_interval_covers_zero_for_nearly_every_pair_of_seeds() -> None:
    intervals = [
        paired_bootstrap(_run(TINY, 8, seed=s), _run(TINY, 8, seed=1000 + s), replicates=500, seed=s) for s in range(60)
    ]
    covered = sum(d.low <= 0.0 <= d.high for d in intervals)
    assert covered >= 54  # a 95% interval: about 57 of 60 expected


def test_a_clearly_better_model_is_significant() -> None:
    better = [min(1.0, p + 0.35) for p in TINY]
    got = paired_bootstrap(_run(TINY, 8, seed=1), _run(better, 8, seed=2), seed=0)
    assert got.significant and got.low > 0.0 and got.value > 0.2


def test_pairing_by_problem_makes_a_small_uniform_gain_significant() -> None:
    # 40 problems spread from easy to hard (baseline 5%..83% of 100 samples right); the other run gets exactly 10
    # more samples right on every problem. Paired, the per-problem difference is a constant 0.1 and only sample noise
    # is left (sd about 0.011): the interval is narrow and excludes 0. Drawing problems independently for each run
    # would add the spread in difficulty (sd about 0.065) and take in 0, so this fails if the pairing is lost.
    baseline = {f"p{i}": [k < 5 + 2 * i for k in range(100)] for i in range(40)}
    other = {f"p{i}": [k < 15 + 2 * i for k in range(100)] for i in range(40)}
    got = paired_bootstrap(baseline, other, seed=0)
    assert got.value == pytest.approx(0.1)
    assert got.significant and got.low > 0.05 and got.high - got.low < 0.08
