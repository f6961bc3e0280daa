"""The report's figures as inline SVG, drawn with matplotlib: the heat maps, the training curves and compare's plot.

SVG text from matplotlib needs no font and no script at view time; `svg.hashsalt` and an empty date make the same
data give the same bytes (a report committed to a GitOps repository diffs only where the data changed). Each heat
map cell is its own patch carrying an id (`heat-ARM-BENCHMARK-PROBLEM`, indices) and a link to the cell's samples
(`#cell-...`), which the page shows with CSS `:target`, so clicking a cell needs no JavaScript either.
"""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .gather import Curve, Outcomes

if TYPE_CHECKING:
    from .arms import Arm
    from .comparison import Comparison

MISSING = "#d9d9d9"  # a cell with no records
CMAP = "RdYlGn"  # red: no sample correct, green: all


def cell_anchor(arm: int, benchmark: int, problem: int) -> str:
    return f"cell-{arm}-{benchmark}-{problem}"


def heat_id(arm: int, benchmark: int, problem: int) -> str:
    return f"heat-{arm}-{benchmark}-{problem}"


@contextlib.contextmanager
def _figures() -> Iterator[Any]:
    import matplotlib

    matplotlib.use("Agg")  # no display: a file is the only output
    import matplotlib.pyplot as plt

    with matplotlib.rc_context({"svg.hashsalt": "cotlab-report", "svg.fonttype": "path"}):
        yield plt


def inline_svg(text: str) -> str:
    """An SVG file's <svg> element, for inlining: no XML prolog or doctype, no metadata (it holds a date), and
    in-page links that stay in the page (matplotlib's backend_svg gives every link target="_blank")."""
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", text[text.index("<svg") :], count=1, flags=re.DOTALL)
    return re.sub(r'(xlink:href="#[^"]*") target="_blank"', r"\1", svg)


def _svg(figure: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    figure.savefig(buffer, format="svg")
    plt.close(figure)
    return inline_svg(buffer.getvalue())


def heat_map_svg(outcomes: Outcomes, benchmark_index: int, labels: list[str]) -> str:
    """Arms as rows, problems as columns; each cell coloured by the fraction of its samples that are correct."""
    from matplotlib.patches import Rectangle

    with _figures() as plt:
        problems, arms = len(outcomes.problems), len(labels)
        width = min(max(6.0, 2.5 + 0.16 * problems), 40.0)
        figure, axes = plt.subplots(figsize=(width, 1.1 + 0.32 * arms))
        colormap = plt.get_cmap(CMAP)
        for a, row in enumerate(outcomes.rates):
            for p, rate in enumerate(row):
                cell = Rectangle(
                    (p, a),
                    1,
                    1,
                    facecolor=MISSING if rate is None else colormap(rate),
                    edgecolor="white",
                    linewidth=0.5,
                )
                cell.set_gid(heat_id(a, benchmark_index, p))
                if rate is not None:
                    cell.set_url("#" + cell_anchor(a, benchmark_index, p))
                axes.add_patch(cell)
        axes.set_xlim(0, max(problems, 1))
        axes.set_ylim(arms, 0)  # the first arm on top, as in the table
        axes.set_yticks([a + 0.5 for a in range(arms)], labels, fontsize=8)
        step = max(1, problems // 40)  # at most ~40 problem labels; every cell is still there
        axes.set_xticks([p + 0.5 for p in range(0, problems, step)], outcomes.problems[::step], fontsize=6, rotation=90)
        axes.tick_params(length=0)
        for side in axes.spines.values():
            side.set_visible(False)
        mappable = plt.cm.ScalarMappable(cmap=colormap, norm=plt.Normalize(0, 1))
        bar = figure.colorbar(mappable, ax=axes, fraction=0.03, pad=0.01)
        bar.solids.set_rasterized(False)  # matplotlib rasterizes a bar of 50+ colours; the page has no images
        bar.set_label("samples correct", fontsize=7)
        bar.ax.tick_params(labelsize=7)
        axes.set_title(f"{outcomes.benchmark}: fraction of samples correct per problem (click a cell)", fontsize=9)
        figure.tight_layout()
        return _svg(figure)


def curves_svg(curves: list[Curve]) -> str:
    """Loss and learning rate against the optimizer step, one line per FineTuneRun (each training seed's)."""
    with _figures() as plt:
        figure, (loss, rate) = plt.subplots(1, 2, figsize=(10, 3.6))
        for curve in curves:
            name = curve.name
            steps = [s.step for s in curve.steps]
            loss.plot(steps, [s.loss for s in curve.steps], label=name, linewidth=1.2)
            rate.plot(steps, [s.learning_rate for s in curve.steps], label=name, linewidth=1.2)
        loss.set_xlabel("optimizer step")
        loss.set_ylabel("training loss (mean per trained token)")
        rate.set_xlabel("optimizer step")
        rate.set_ylabel("learning rate")
        loss.legend(fontsize=7)
        for axes in (loss, rate):
            axes.grid(alpha=0.3)
        figure.tight_layout()
        return _svg(figure)


def compare_plot_svg(arms: list[Arm], comparison: Comparison, *, x: str) -> str:
    """The figure `cotctl compare --plot FILE.svg --plot-x X` draws, drawn by it."""
    from .plot import draw_plot

    with _figures(), tempfile.TemporaryDirectory() as scratch, warnings.catch_warnings():
        # With no training-set property to place (only reference lines) matplotlib warns of an empty legend.
        warnings.filterwarnings("ignore", "No artists with labels found", UserWarning)
        path = Path(scratch) / "plot.svg"
        draw_plot(path, arms, comparison, x=x)
        return inline_svg(path.read_text(encoding="utf-8"))
