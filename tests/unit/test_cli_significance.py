"""The paired bootstrap and the corrections, against values worked out by hand and runs that differ only by seed."""

from __future__ import annotations

import random

import numpy as np
import pytest

from cotlab.cli.analysis.corrections import Corrected, Correction, correct
from cotlab.cli.analysis.significance import Difference, arm_estimate, paired_bootstrap, seed_variance


@pytest.mark.parametrize(
    ("scores", "want"),
    [
        # Seed means 0.6 and 0.4 and no interaction: the seed effects are +-0.1, variance 0.02.
        ([[0.5, 0.7], [0.3, 0.5]], 0.02),
        # The seeds differ only in which problem they solve: no seed effect at all (interaction only).
        ([[1.0, 0.0], [0.0, 1.0]], 0.0),
        # Means 0.5 and 0.25 (seed MS 2 * 0.03125 = 0.0625), interaction MS 0.0625: all of it noise.
        ([[1.0, 0.0], [0.5, 0.0]], 0.0),
        # Three seeds, three problems: seed MS 3 * var(0.5, 0.6, 0.7) = 0.03; residuals 0, -1/60, 1/60 (twice) and
        # 0, 1/30, -1/30: squares 1/300 over (3 - 1)(3 - 1) = 4 degrees of freedom, interaction MS 1/1200.
        ([[0.4, 0.5, 0.6], [0.5, 0.6, 0.7], [0.6, 0.75, 0.75]], (0.03 - 1 / 1200) / 3),
        ([[0.5, 0.7]], 0.0),  # one seed: no seed variance to estimate
    ],
    ids=["seed-effect", "interaction-only", "noise-only", "three-by-three", "one-seed"],
)
def test_seed_variance_by_two_way_anova(scores: list[list[float]], want: float) -> None:
    assert seed_variance(np.asarray(scores)) == pytest.approx(want)


def test_arm_estimate_pools_problems_and_seeds() -> None:
    # Two seeds, two problems, 4 samples each: per-problem means [[1, 0.5], [0.5, 0]]; per problem over seeds
    # 0.75 and 0.25 (variance 0.125, / 2 problems = 0.0625); seed means 0.75 and 0.25: seed MS 2 * 0.125 = 0.25,
    # interaction MS 0, so the seed variance is 0.125 and over 2 seeds adds 0.0625: stderr sqrt(0.125).
    seeds = [{"a": [True] * 4, "b": [True, True, False, False]}, {"a": [True, True, False, False], "b": [False] * 4}]
    want = {"value": 0.5, "stderr": 0.125**0.5, "seeds": 2, "problems": 2}
    assert arm_estimate(seeds).__dict__ == pytest.approx(want)
    one = arm_estimate(seeds[:1])  # one seed: the evaluator's own stderr (ddof 1 over problems)
    assert (one.value, one.stderr, one.seeds) == (0.75, pytest.approx(0.25), 1)


def test_interval_and_p_value_read_the_replicates() -> None:
    draws = np.linspace(-0.1, 0.9, 101)  # -0.10 .. 0.90 in steps of 0.01: 11 of 101 at or below 0
    difference = Difference(value=0.4, stderr=0.3, problems=5, seeds=(1, 1), df=4.0, draws=draws)
    assert difference.interval(0.8) == pytest.approx((0.0, 0.8))  # the 10% and 90% quantiles: draws 10 and 90
    assert difference.p_value == pytest.approx(2 * 11 / 101)
    with pytest.raises(ValueError, match="confidence"):
        difference.interval(1.0)


def test_one_seed_per_arm_scales_by_t_with_problems_minus_one_degrees_of_freedom() -> None:
    baseline = {f"p{i}": [k < i for k in range(10)] for i in range(10)}
    other = {f"p{i}": [k < i + (i % 3) for k in range(10)] for i in range(10)}
    got = paired_bootstrap([baseline], [other], replicates=4000)
    # Per-problem gains (i % 3) / 10 except where capped at 10 right: 0, .1, .2, 0, .1, .2, 0, .1, .2, 0 -> 0.09.
    assert got.value == pytest.approx(0.09) and got.seeds == (1, 1) and got.problems == 10
    assert got.df == pytest.approx(9.0)
    gains = np.array([(i % 3) / 10 for i in range(10)])
    assert got.stderr == pytest.approx(float(gains.std(ddof=1)) / 10**0.5)


def test_seed_parts_add_their_degrees_of_freedom_by_welch_satterthwaite() -> None:
    # Every problem has the same gain, so only the seeds vary: three seeds a side whose means differ by 0.1 steps.
    def arm(offsets: list[int]) -> list[dict[str, list[bool]]]:
        return [{f"p{j}": [k < 4 + o for k in range(10)] for j in range(6)} for o in offsets]

    got = paired_bootstrap(arm([0, 1, 2]), arm([2, 3, 4]), replicates=2000)
    assert got.value == pytest.approx(0.2) and got.seeds == (3, 3)
    # No problem varies (the problem part is 0), each arm's seed variance is 0.01 / 3: df = (2v)^2 / (2 v^2 / 2) = 4.
    assert got.df == pytest.approx(4.0) and got.stderr == pytest.approx((2 * 0.01 / 3) ** 0.5)


def test_pairing_drops_problems_only_one_run_scored() -> None:
    got = paired_bootstrap([{"a": [True], "b": [False]}], [{"a": [True], "c": [True]}], replicates=100)
    assert got.problems == 1 and got.value == 0.0 and got.interval(0.95) == (0.0, 0.0) and got.df is None
    with pytest.raises(ValueError, match="share no problem"):
        paired_bootstrap([{"a": [True]}], [{"b": [True]}])
    with pytest.raises(ValueError, match="problem 'a' has no samples"):
        paired_bootstrap([{"a": []}], [{"a": [True]}])


def _run(probabilities: list[float], samples: int, seed: int) -> dict[str, list[bool]]:
    """A model that gets problem i right with probability p_i, sampled `samples` times with `seed`."""
    rng = random.Random(seed)
    return {f"p{i}": [rng.random() < p for _ in range(samples)] for i, p in enumerate(probabilities)}


# A tiny benchmark: 12 problems from easy to hard, 8 samples each (a small "many-sample" evaluation).
TINY = [0.9, 0.8, 0.75, 0.6, 0.5, 0.5, 0.4, 0.3, 0.25, 0.2, 0.1, 0.05]


def test_same_model_with_different_sampling_seeds_is_not_significant() -> None:
    got = paired_bootstrap([_run(TINY, 8, seed=1)], [_run(TINY, 8, seed=2)])
    low, high = got.interval(0.95)
    assert low <= 0.0 <= high and got.value != 0.0  # the seeds did produce different samples


def test_a_clearly_better_model_is_significant() -> None:
    better = [min(1.0, p + 0.35) for p in TINY]
    got = paired_bootstrap([_run(TINY, 8, seed=1)], [_run(better, 8, seed=2)])
    assert got.interval(0.95)[0] > 0.0 and got.value > 0.2


def test_pairing_by_problem_makes_a_small_uniform_gain_significant() -> None:
    # 40 problems spread from easy to hard (baseline 5%..83% of 100 samples right); the other run gets exactly 10
    # more samples right on every problem. Paired, the per-problem difference is a constant 0.1: the interval is
    # that point. Drawing problems independently for each run would add the spread in difficulty (sd about
    # 0.065) and take in 0, so this fails if the pairing is lost.
    baseline = {f"p{i}": [k < 5 + 2 * i for k in range(100)] for i in range(40)}
    other = {f"p{i}": [k < 15 + 2 * i for k in range(100)] for i in range(40)}
    got = paired_bootstrap([baseline], [other])
    assert got.value == pytest.approx(0.1) and got.interval(0.95) == pytest.approx((0.1, 0.1))


def _difference(p_value: float) -> Difference:
    """Replicates whose share at or below 0 is half of `p_value`, spread evenly over [-1, 1] around that point."""
    below = round(p_value / 2 * 10000)
    draws = np.concatenate([np.linspace(-1.0, -1e-6, below), np.linspace(1e-6, 1.0, 10000 - below)])
    return Difference(value=0.5, stderr=0.1, problems=30, seeds=(1, 1), df=29.0, draws=draws)


def test_holm_steps_down_and_shows_each_interval_at_the_level_it_was_tested() -> None:
    # Four differences, p = 0.004, 0.03, 0.012, 0.2. Holm tests 0.004 at 1 - 0.05/4, 0.012 at 1 - 0.05/3,
    # 0.03 at 1 - 0.05/2 (0.03 > 0.025: it stops), and 0.2 at the level where it stopped.
    differences = [_difference(p) for p in (0.004, 0.03, 0.012, 0.2)]
    got = correct(differences, confidence=0.95, method=Correction.holm)
    assert [(c.level, c.significant) for c in got] == [
        (pytest.approx(0.9875), True), (0.975, False), (pytest.approx(1 - 0.05 / 3), True), (0.975, False)
    ]  # fmt: skip
    assert all((c.low > 0) == c.significant for c in got)  # an interval excludes 0 exactly when significant
    none = correct(differences, confidence=0.95, method=Correction.none)
    assert [c.significant for c in none] == [True, True, True, False] and {c.level for c in none} == {0.95}


def test_benjamini_hochberg_selects_up_to_the_largest_passing_rank() -> None:
    # p = 0.004, 0.03, 0.012, 0.2 sorted: 0.004 <= 0.0125, 0.012 <= 0.025, 0.03 <= 0.0375, 0.2 > 0.05: r = 3.
    differences = [_difference(p) for p in (0.004, 0.03, 0.012, 0.2)]
    got = correct(differences, confidence=0.95, method=Correction.bh)
    assert [c.significant for c in got] == [True, True, True, False]
    assert [c.level for c in got] == pytest.approx([1 - 3 * 0.05 / 4] * 4)
    nothing = correct([_difference(0.5)], confidence=0.95, method=Correction.bh)
    assert nothing == [Corrected(*nothing[0].__dict__.values())] and not nothing[0].significant
