"""`cotctl compare --plot`: scores against a property of the training set (trace length, count, stage, a label).

One series per benchmark: each fine-tuned arm is a point at its TraceDataset's property, with its standard error
(over problems and training seeds) as an error bar; arms with no training set (a base model, a reference model)
are dashed horizontal lines, so
"does longer / harder / more refined data help, and does it beat the baseline" reads off one figure.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..terminal.errors import UsageError

if TYPE_CHECKING:
    from .arms import Arm
    from .comparison import Comparison


@dataclass(frozen=True)
class Point:
    benchmark: str
    label: str
    x: float | str | None  # None: no training set (a reference line)
    y: float
    stderr: float | None


def property_of(arm: Arm, x: str) -> float | str | None:
    """The arm's training-set property named by --plot-x, or None when it has no training set or no such value."""
    if x.startswith("label:"):
        key = x.removeprefix("label:")
        value = (arm.traces.metadata.labels if arm.traces else {}).get(key) or arm.run.metadata.labels.get(key)
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            return value
    traces = arm.traces
    if traces is None or traces.status is None:
        return None
    if x == "tokens":
        stats = traces.status.stats
        return float(stats.tokens.p50) if stats and stats.tokens else None
    if x == "count":
        return float(traces.status.count) if traces.status.count is not None else None
    if x == "stage":
        stages = traces.status.stats.stages if traces.status.stats else {}
        return Counter(stages).most_common(1)[0][0] if stages else None
    raise UsageError(f"--plot-x: expected tokens, count, stage or label:KEY, got {x!r}")


def plot_points(arms: list[Arm], comparison: Comparison, *, x: str) -> list[Point]:
    """What the figure shows, as data (a pure function; the drawing only places these)."""
    points = []
    for arm, row in zip(arms, comparison.rows, strict=True):
        where = property_of(arm, x)
        for benchmark, cells in row.scores.items():
            cell = cells.get(comparison.metric)
            if cell is not None:
                points.append(Point(benchmark, row.label, where, cell.value, cell.stderr))
    return points


def draw_plot(path: Path, arms: list[Arm], comparison: Comparison, *, x: str) -> None:
    """Write the figure to `path` (the format from its suffix, e.g. .png or .svg)."""
    import matplotlib

    matplotlib.use("Agg")  # no display: a file is the only output
    import matplotlib.pyplot as plt

    points = plot_points(arms, comparison, x=x)
    categories: list[str] = []
    for point in points:
        if isinstance(point.x, str) and point.x not in categories:
            categories.append(point.x)
    figure, axes = plt.subplots(figsize=(7, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, benchmark in enumerate(comparison.benchmarks):
        color = colors[index % len(colors)]
        mine = [p for p in points if p.benchmark == benchmark]
        placed = sorted(
            ((categories.index(p.x) if isinstance(p.x, str) else p.x, p) for p in mine if p.x is not None),
            key=lambda item: item[0],
        )
        if placed:
            axes.errorbar(
                [where for where, _ in placed],
                [100 * p.y for _, p in placed],
                yerr=[100 * (p.stderr or 0.0) for _, p in placed],
                marker="o",
                capsize=3,
                color=color,
                label=benchmark,
            )
            for where, p in placed:
                axes.annotate(p.label, (where, 100 * p.y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        for p in (p for p in mine if p.x is None):
            axes.axhline(100 * p.y, linestyle="--", linewidth=1, color=color, alpha=0.7)
            axes.annotate(f"{p.label} ({benchmark})", (0, 100 * p.y), xycoords=("axes fraction", "data"), fontsize=7)
    if categories:
        axes.set_xticks(range(len(categories)), categories)
    names = {"tokens": "trace length (median tokens)", "count": "traces", "stage": "trace stage"}
    axes.set_xlabel(names.get(x, x.removeprefix("label:")))
    axes.set_ylabel(f"{comparison.metric} (%)")
    axes.set_title(f"{comparison.metric} against the training set's {names.get(x, x)}")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
