"""Many intervals at once: the correction for multiple comparisons that `cotctl compare` applies to its differences.

A study's table prints a dozen differences (arms x benchmarks); at 95% each, about one in twenty would exclude 0
by chance. The correction sets each interval's level so that "significant" (the interval excludes 0) keeps its
promise over the whole table:

- `holm` (the default): Holm's step-down procedure, which holds the chance of any false "significant" in the
  table at 1 - confidence. The differences are taken in order of their bootstrap p-values; the i-th (from 0) of
  m is tested with the interval at level 1 - alpha / (m - i), and the procedure stops at the first that includes
  0: it and every later one are shown at that step's level and are not significant. So each interval excludes 0
  exactly when its difference is significant.
- `bh`: Benjamini-Hochberg, which holds the expected share of false "significant" ones among those called so
  at alpha: the largest r with p_(r) <= r alpha / m selects r differences, and every interval is shown at level
  1 - r alpha / m (Benjamini and Yekutieli's false-coverage-rate intervals; 1 - alpha / m when r is 0).
- `none`: every interval at the confidence level, as if it were the only one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from .significance import Difference


class Correction(StrEnum):
    holm = "holm"
    bh = "bh"
    none = "none"


CORRECTION_NAMES = {
    Correction.holm: "Holm (family-wise error)",
    Correction.bh: "Benjamini-Hochberg (false discovery rate)",
    Correction.none: "none",
}


@dataclass(frozen=True)
class Corrected:
    """One difference's interval at the level its correction gives it, and whether it is significant."""

    low: float
    high: float
    level: float
    significant: bool


def _excludes_zero(low: float, high: float) -> bool:
    return low > 0.0 or high < 0.0


def correct(differences: Sequence[Difference], *, confidence: float, method: Correction) -> list[Corrected]:
    """Each difference's interval and verdict under `method`, in the order given."""
    alpha, count = 1.0 - confidence, len(differences)
    ranked = sorted(range(count), key=lambda i: differences[i].p_value)
    if method is Correction.holm:
        return _holm(differences, ranked, alpha)
    levels, chosen = [confidence] * count, set(range(count))
    if method is Correction.bh:
        passed = [r + 1 for r, i in enumerate(ranked) if differences[i].p_value <= (r + 1) * alpha / count]
        selected = max(passed, default=0)
        levels = [1.0 - max(selected, 1) * alpha / count] * count
        chosen = set(ranked[:selected])
    out = []
    for i, difference in enumerate(differences):
        low, high = difference.interval(levels[i])
        out.append(Corrected(low, high, levels[i], i in chosen and _excludes_zero(low, high)))
    return out


def _holm(differences: Sequence[Difference], ranked: Sequence[int], alpha: float) -> list[Corrected]:
    out: dict[int, Corrected] = {}
    stopped: float | None = None
    for step, i in enumerate(ranked):
        level = stopped if stopped is not None else 1.0 - alpha / (len(ranked) - step)
        low, high = differences[i].interval(level)
        if stopped is None and not _excludes_zero(low, high):
            stopped = level
        out[i] = Corrected(low, high, level, stopped is None)
    return [out[i] for i in range(len(differences))]
