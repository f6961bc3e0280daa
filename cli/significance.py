"""Is one run really better than another? A paired bootstrap of the pass@1 difference over problems.

Two EvalRuns of one benchmark share its problems, so their difference is paired by problem. Each replicate draws
P problems with replacement (the same draws for both runs), then, for each drawn problem, draws each run's n
samples with replacement from that run's own samples of the problem. The replicate's statistic is the difference
in pass@1 (the mean over drawn problems of the mean correctness of the drawn samples). The interval is the
(1-confidence)/2 and (1+confidence)/2 quantiles of the replicates; the difference is significant when the interval
excludes 0. Resampling both levels keeps the two sources of noise in a many-sample evaluation: which problems
were drawn, and which samples the model happened to produce.

Drawing n samples with replacement from n samples of which c are correct gives a Binomial(n, c/n) count of
correct ones: the replicates draw that count directly (the same distribution, one draw instead of n).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

DEFAULT_REPLICATES = 2000
DEFAULT_CONFIDENCE = 0.95


@dataclass(frozen=True)
class Difference:
    """`other - baseline` in pass@1 over the problems both runs scored, with its bootstrap interval."""

    value: float
    low: float
    high: float
    problems: int
    replicates: int
    confidence: float

    @property
    def significant(self) -> bool:
        return self.low > 0.0 or self.high < 0.0


def _counts(rows: Mapping[str, Sequence[bool]], problems: Sequence[str]) -> tuple[list[int], list[int]]:
    n = [len(rows[p]) for p in problems]
    c = [sum(bool(x) for x in rows[p]) for p in problems]
    return n, c


def paired_bootstrap(
    baseline: Mapping[str, Sequence[bool]],
    other: Mapping[str, Sequence[bool]],
    *,
    replicates: int = DEFAULT_REPLICATES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> Difference:
    """The pass@1 difference `other - baseline` on their shared problems (problem id -> correctness per sample).

    Problems only one run scored are left out (they cannot be paired); a problem with no samples in either run is
    an error, as is having no shared problem at all.
    """
    import numpy as np

    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: must be within (0, 1), got {confidence}")
    if replicates < 1:
        raise ValueError(f"replicates: must be >= 1, got {replicates}")
    problems = sorted(set(baseline) & set(other))
    if not problems:
        raise ValueError("the two runs share no problem: they cannot be paired")
    empty = [p for p in problems if not baseline[p] or not other[p]]
    if empty:
        raise ValueError(f"problem {empty[0]!r} has no samples in one of the runs")
    n_a, c_a = (np.asarray(v, dtype=np.int64) for v in _counts(baseline, problems))
    n_b, c_b = (np.asarray(v, dtype=np.int64) for v in _counts(other, problems))
    observed = float(np.mean(c_b / n_b) - np.mean(c_a / n_a))

    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, len(problems), size=(replicates, len(problems)))
    correct_a = rng.binomial(n_a[drawn], c_a[drawn] / n_a[drawn])
    correct_b = rng.binomial(n_b[drawn], c_b[drawn] / n_b[drawn])
    differences = (correct_b / n_b[drawn]).mean(axis=1) - (correct_a / n_a[drawn]).mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(differences, [tail, 1.0 - tail])
    return Difference(
        value=observed,
        low=float(low),
        high=float(high),
        problems=len(problems),
        replicates=replicates,
        confidence=confidence,
    )
