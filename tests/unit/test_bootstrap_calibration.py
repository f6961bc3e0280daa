"""The bootstrap's intervals hold what they claim, measured by simulation.

Each simulated comparison draws a benchmark (problem difficulties from Beta(0.5, 1): many hard problems, a few
easy ones, as AIME), trains each arm's seeds (a seed moves every problem's log-odds by a seed effect and by a
seed-and-problem effect), samples every problem 64 times, and runs `paired_bootstrap` as `cotctl compare` does.

- Two identical arms: a 95% interval must exclude 0 in 3-8% of at least 400 comparisons. The two-stage bootstrap
  cotlab used before (problems, then samples within problems) excluded it in about 1%: it counted sample noise
  twice, so real differences were called "not significant" too often.
- A real gain of one standard error (the spread of the estimated difference, measured on 20,000 simulated
  identical pairs) must be detected, the interval above 0, at the rate the normal approximation predicts,
  Phi(1 - 1.96) = 16.9%, within 5 points (the binomial noise of 600 comparisons is 1.5 points).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pytest

from cotlab.cli.analysis.significance import SeedRecords, paired_bootstrap

SAMPLES = 64
PROBLEMS = 30
REPLICATES = 2000


@dataclass(frozen=True)
class World:
    """How seeds move a problem's log-odds of being solved: by a seed effect and a seed-and-problem effect."""

    seeds: int
    seed_sd: float = 0.0
    interaction_sd: float = 0.0


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1.0 - p))


def _arm(rng: np.random.Generator, difficulty: np.ndarray, world: World, gain: float) -> list[SeedRecords]:
    """One arm's seeds: each problem's samples, `gain` added to every problem's probability of a right one."""
    shift = rng.normal(0.0, world.seed_sd, size=(world.seeds, 1))
    shift = shift + rng.normal(0.0, world.interaction_sd, size=(world.seeds, len(difficulty)))
    chance = np.clip(1.0 / (1.0 + np.exp(-(_logit(difficulty) + shift))) + gain, 0.0, 1.0)
    right = rng.binomial(SAMPLES, chance)
    return [{f"p{j}": [True] * int(c) + [False] * (SAMPLES - int(c)) for j, c in enumerate(row)} for row in right]


def _difficulties(rng: np.random.Generator) -> np.ndarray:
    return np.clip(rng.beta(0.5, 1.0, size=PROBLEMS), 0.02, 0.85)  # 0.85 + the gain stays a probability


Compare = Callable[[list[SeedRecords], list[SeedRecords], int], tuple[float, float]]


def bootstrap(baseline: list[SeedRecords], other: list[SeedRecords], seed: int) -> tuple[float, float]:
    return paired_bootstrap(baseline, other, replicates=REPLICATES, seed=seed).interval(0.95)


def rates(compare: Compare, world: World, *, gain: float, comparisons: int, seed: int) -> tuple[float, float]:
    """(share of intervals excluding 0, share above 0) over `comparisons` simulated comparisons."""
    rng = np.random.default_rng(seed)
    excluded = above = 0
    for i in range(comparisons):
        difficulty = _difficulties(rng)
        low, high = compare(_arm(rng, difficulty, world, 0.0), _arm(rng, difficulty, world, gain), i)
        excluded += low > 0.0 or high < 0.0
        above += low > 0.0
    return excluded / comparisons, above / comparisons


def standard_error(world: World, *, draws: int, seed: int) -> float:
    """The spread of the observed difference between two identical arms, over simulated comparisons."""
    rng = np.random.default_rng(seed)
    differences = []
    for _ in range(draws):
        difficulty = _difficulties(rng)
        arms = [_arm(rng, difficulty, world, 0.0) for _ in range(2)]
        means = [np.mean([np.mean([sum(v) / len(v) for v in s.values()]) for s in arm]) for arm in arms]
        differences.append(means[1] - means[0])
    return float(np.std(differences))


@pytest.mark.parametrize(
    "world",
    [
        World(seeds=1),
        World(seeds=1, interaction_sd=0.3),
        World(seeds=3, seed_sd=0.2, interaction_sd=0.2),
        World(seeds=3, seed_sd=0.5, interaction_sd=0.3),
    ],
    ids=["one-seed", "one-seed-uneven", "three-seeds", "three-seeds-seed-dominated"],
)
def test_two_identical_arms_exclude_zero_about_5_percent_of_the_time(world: World) -> None:
    false_alarms, _ = rates(bootstrap, world, gain=0.0, comparisons=400, seed=world.seeds)
    assert 0.03 <= false_alarms <= 0.08


def test_a_gain_of_one_standard_error_is_found_as_often_as_the_normal_approximation_says() -> None:
    world = World(seeds=1)
    gain = standard_error(world, draws=20000, seed=7)
    assert 0.008 < gain < 0.02  # 30 problems x 64 samples: about 1.2 points
    _, detected = rates(bootstrap, world, gain=gain, comparisons=600, seed=11)
    expected = NormalDist().cdf(1.0 - NormalDist().inv_cdf(0.975))
    assert expected == pytest.approx(0.1685, abs=1e-4)
    assert abs(detected - expected) <= 0.05
