"""The report as one HTML page: built as an element tree (every value escaped by ElementTree), charts inlined.

No script and no external reference: the figures are inline SVG, the styles one <style> element, and a heat map
cell opens its samples through an in-page link (`#cell-...`) that CSS `:target` shows as a side panel.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .charts import cell_anchor, compare_plot_svg, curves_svg, heat_map_svg
from .gather import CellSamples, Curve, Outcomes, TrainingSet

if TYPE_CHECKING:
    from .arms import Arm
    from .comparison import Comparison

BEST = " *"  # compare's mark of a column's best cell

STYLE = """
body { font-family: "DejaVu Sans", system-ui, sans-serif; margin: 24px; color: #222; max-width: 1500px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; vertical-align: top; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
td.best { font-weight: bold; } .note { color: #555; font-size: 13px; }
.scroll { overflow-x: auto; } svg { max-width: 100%; height: auto; }
.scroll svg { max-width: none; }
.cell { display: none; }
.cell:target { display: block; position: fixed; top: 0; right: 0; width: min(760px, 96vw); height: 100vh;
  overflow-y: auto; background: #fff; border-left: 2px solid #888; box-shadow: -4px 0 16px rgba(0, 0, 0, .25);
  padding: 12px 20px; box-sizing: border-box; }
.cell .close { float: right; } pre { white-space: pre-wrap; background: #f6f6f6; padding: 8px; font-size: 12px; }
.correct { color: #1a7f37; } .wrong { color: #b42318; }
"""


@dataclass(frozen=True)
class Report:
    """Everything the page shows, gathered; `table` is compare's own flat rows (its numbers, as it prints them)."""

    title: str
    selection: str
    comparison: Comparison
    caption: str
    table: list[dict[str, Any]]
    arms: list[Arm]
    plot_x: str
    outcomes: list[Outcomes]
    cells: dict[tuple[int, str, str], CellSamples]
    curves: list[Curve]
    training_sets: list[TrainingSet]


def _text(parent: ET.Element, tag: str, text: str, **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attributes)
    element.text = text
    return element


def _table(parent: ET.Element, rows: list[dict[str, Any]], *, id_: str | None = None) -> ET.Element:
    table = ET.SubElement(parent, "table", {"id": id_} if id_ else {})
    columns = list(rows[0]) if rows else []
    header = ET.SubElement(ET.SubElement(table, "thead"), "tr")
    for column in columns:
        _text(header, "th", column)
    body = ET.SubElement(table, "tbody")
    for row in rows:
        line = ET.SubElement(body, "tr")
        for column in columns:
            value = "" if row[column] is None else str(row[column])
            if value.endswith(BEST):
                _text(line, "td", value.removesuffix(BEST), **{"class": "best"})
            else:
                _text(line, "td", value)
    return table


class _Page:
    """Collects the body and the SVG figures, which are spliced in after serialisation (ElementTree would
    rewrite their namespaces)."""

    def __init__(self, title: str) -> None:
        self.html = ET.Element("html", lang="en")
        head = ET.SubElement(self.html, "head")
        ET.SubElement(head, "meta", charset="utf-8")
        _text(head, "title", title)
        _text(head, "style", STYLE)
        self.body = ET.SubElement(self.html, "body")
        self.figures: list[str] = []

    def figure(self, parent: ET.Element, svg: str, *, scroll: bool = False) -> None:
        holder = ET.SubElement(parent, "div", {"class": "scroll figure"} if scroll else {"class": "figure"})
        holder.append(ET.Comment(f"figure {len(self.figures)}"))
        self.figures.append(svg)

    def serialise(self) -> str:
        text = ET.tostring(self.html, encoding="unicode", method="html")
        for index, svg in enumerate(self.figures):
            text = text.replace(f"<!--figure {index}-->", svg, 1)
        return "<!DOCTYPE html>\n" + text + "\n"


def build_page(report: Report) -> str:
    """The whole page as HTML text."""
    page = _Page(report.title)
    body = page.body
    _text(body, "h1", report.title)
    _text(body, "p", f"EvalRuns {report.selection}; baseline: {report.comparison.baseline}.", **{"class": "note"})

    scores = ET.SubElement(body, "section", id="scores")
    _text(scores, "h2", "Scores")
    _text(scores, "p", report.caption, **{"class": "note"})
    _settings(scores, report.comparison)
    for line in report.comparison.notes:  # what compare says beside its table (on stderr)
        _text(scores, "p", line, **{"class": "note comparison-note"})
    _table(scores, report.table, id_="score-table")

    plot = ET.SubElement(body, "section", id="plot")
    _text(plot, "h2", "Scores against the training set")
    page.figure(plot, compare_plot_svg(report.arms, report.comparison, x=report.plot_x))

    labels = [row.label for row in report.comparison.rows]
    outcomes = ET.SubElement(body, "section", id="outcomes")
    _text(outcomes, "h2", "Which problems each arm solves")
    _text(outcomes, "p", "Problems in id order; click a cell for its samples.", **{"class": "note"})
    for b, found in enumerate(report.outcomes):
        page.figure(outcomes, heat_map_svg(found, b, labels), scroll=True)
        _table(outcomes, _solved_rows(found, labels))
    for b, found in enumerate(report.outcomes):
        for a in range(len(labels)):
            for p, problem_id in enumerate(found.problems):
                cell = report.cells.get((a, found.benchmark, problem_id))
                if cell is not None:
                    _cell_panel(body, cell, labels[a], cell_anchor(a, b, p))

    training = ET.SubElement(body, "section", id="training")
    _text(training, "h2", "Training curves")
    if report.curves:
        page.figure(training, curves_svg(report.curves))
        _table(training, [_curve_row(c) for c in report.curves], id_="curve-table")
    else:
        _text(training, "p", "No FineTuneRun behind these arms recorded a training curve.", **{"class": "note"})
    _text(training, "h2", "Training sets")
    if report.training_sets:
        _table(training, [_training_set_row(t) for t in report.training_sets], id_="training-sets")
    else:
        _text(training, "p", "No arm was fine-tuned on a TraceDataset.", **{"class": "note"})
    return page.serialise()


def _settings(parent: ET.Element, comparison: Comparison) -> None:
    """Every setting compare reports beside its rows (whatever it adds, e.g. a correction, shows up here)."""
    wire = comparison.to_wire()
    items = {k: v for k, v in wire.items() if k not in ("rows", "benchmarks") and not isinstance(v, dict | list)}
    listing = ET.SubElement(parent, "p", {"class": "note", "id": "comparison-settings"})
    listing.text = "; ".join(f"{key}: {value}" for key, value in items.items())


def _solved_rows(found: Outcomes, labels: list[str]) -> list[dict[str, Any]]:
    rows = []
    for label, rates in zip(labels, found.rates, strict=True):
        scored = [r for r in rates if r is not None]
        rows.append(
            {
                f"{found.benchmark}": label,
                "problems with a correct sample": f"{sum(r > 0 for r in scored)} of {len(scored)}",
                "problems most samples solve": f"{sum(r > 0.5 for r in scored)} of {len(scored)}",
            }
        )
    return rows


def _cell_panel(body: ET.Element, cell: CellSamples, label: str, anchor: str) -> None:
    panel = ET.SubElement(body, "section", {"class": "cell", "id": anchor})
    _text(panel, "a", "close ✕", href="#outcomes", **{"class": "close"})
    _text(panel, "h3", f"{label} · {cell.benchmark} · problem {cell.problem_id}")
    gold = f"; gold answer: {cell.gold}" if cell.gold is not None else "; gold answer not readable here"
    _text(panel, "p", f"{cell.solved} of {len(cell.samples)} samples correct{gold}")
    if cell.problem is not None:
        _text(panel, "pre", cell.problem, **{"class": "problem"})
    seeds = len({s.evalrun for s in cell.samples}) > 1  # an arm of training seeds: say whose sample each is
    answers = [
        {
            "sample": s.index,
            "extracted answer": s.answer if s.answer is not None else "(none)",
            "grade": "correct" if s.correct else "wrong",
            "finish": s.finish_reason or "",
            "tokens": s.output_tokens,
            **({"training seed": s.seed, "evalrun": s.evalrun} if seeds else {}),
        }
        for s in cell.samples
    ]
    _table(panel, answers)
    for sample in (s for s in cell.samples if s.text is not None):
        details = ET.SubElement(panel, "details", {"class": "sample", "open": "open"})
        grade = "correct" if sample.correct else "wrong"
        whose = f"seed {sample.seed}, " if seeds else ""
        title = f"{whose}sample {sample.index}: {sample.answer or '(no answer)'} — {grade}"
        summary = _text(details, "summary", title)
        summary.set("class", grade)
        _text(details, "pre", sample.text or "")


def _curve_row(curve: Curve) -> dict[str, Any]:
    last = curve.steps[-1] if curve.steps else None
    return {
        "fine-tune run": curve.fine_tune_run,
        "arms": ", ".join(curve.labels),
        "training seed": curve.seed,
        "steps": len(curve.steps),
        "first loss": f"{curve.steps[0].loss:.4f}" if curve.steps else "",
        "last loss": f"{last.loss:.4f}" if last else "",
        "tokens/s": f"{last.tokens_per_second:.0f}" if last else "",
        "trained tokens": last.trained_tokens if last else "",
    }


def _training_set_row(traces: TrainingSet) -> dict[str, Any]:
    tokens = traces.tokens
    return {
        "trace dataset": traces.name,
        "arms": ", ".join(traces.labels),
        "traces": traces.count if traces.count is not None else "",
        "tokens min / p50 / p90 / max": " / ".join(str(tokens[k]) for k in ("min", "p50", "p90", "max"))
        if tokens
        else "",
        "stages": ", ".join(f"{stage}: {n}" for stage, n in sorted(traces.stages.items())),
        "correct": f"{100 * traces.correct_rate:.0f}%" if traces.correct_rate is not None else "",
    }
