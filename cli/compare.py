"""`cotctl compare`: the study's table, with honest uncertainty.

Rows are EvalRuns (labelled by run, model, training set or a label), columns are benchmarks: pass@1 ± its standard
error and maj@k, the best of each column marked. Then what no score table gives: each row's pass@1 difference
from a baseline row, with a paired bootstrap interval over problems (samples resampled within problems, see
`significance`), marked significant when the interval excludes 0. The bootstrap reads the per-sample records
from the artifact store (`--artifacts-root` for a claim).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import Field

from cotlab.api import EvalRun, FineTuneRun, Phase, TraceDataset
from cotlab.api.evalrun import BenchmarkScore
from cotlab.api.metrics import parse_metric

from .artifacts import ArtifactStore
from .completion import complete_evalrun
from .describe import model_summary
from .errors import CliError, UsageError, reported
from .evaluations import RunRecords, run_records, scores_of
from .inventory import Inventory, open_inventory
from .kube import Target
from .options import (
    AllNamespacesOpt,
    ArtifactsRootOpt,
    ContextOpt,
    KubeconfigOpt,
    LocalOpt,
    NamespaceOpt,
    RequestTimeoutOpt,
    RootOpt,
    SelectorOpt,
    TableFormat,
    TableOutputOpt,
)
from .output import note, render
from .refs import parse_ref
from .significance import DEFAULT_CONFIDENCE, DEFAULT_REPLICATES, paired_bootstrap
from .views import View

BEST = " *"  # appended to the best cell of a column (bold in Markdown)


class Cell(View):
    value: float
    stderr: float | None = None
    best: bool = False


class Delta(View):
    """A row's pass@1 minus the baseline's on one benchmark, with its bootstrap interval (fractions, not %)."""

    value: float | None = None
    low: float | None = None
    high: float | None = None
    significant: bool | None = None
    problems: int | None = None
    note: str | None = None


class ComparisonRow(View):
    label: str
    evalrun: str
    namespace: str
    model: str
    fine_tune_run: str | None = None
    trace_dataset: str | None = None
    baseline: bool = False
    scores: dict[str, dict[str, Cell]] = Field(default_factory=dict)
    differences: dict[str, Delta] = Field(default_factory=dict)


class Comparison(View):
    """What `cotctl compare -o json` prints."""

    metric: str
    majority: str | None
    baseline: str
    benchmarks: list[str]
    confidence: float
    replicates: int
    rows: list[ComparisonRow]


@dataclass(frozen=True)
class Arm:
    """One EvalRun and what it evaluates: the model, and the FineTuneRun and TraceDataset behind it, if any."""

    run: EvalRun
    scores: dict[str, BenchmarkScore]
    fine_tune: FineTuneRun | None = None
    traces: TraceDataset | None = None

    @property
    def model(self) -> str:
        source = self.run.spec.model
        if source.fine_tune_run_ref is not None:
            base = model_summary(self.fine_tune.spec.base_model) if self.fine_tune else "?"
            return f"{base} + {source.fine_tune_run_ref.name}"
        assert source.source is not None  # the spec's validator requires one of them
        return model_summary(source.source)

    def label(self, rows: str) -> str:
        if rows == "model":
            return self.model
        if rows == "traces":
            return self.traces.metadata.name if self.traces else "(no fine-tune)"
        if rows.startswith("label:"):
            return self.run.metadata.labels.get(rows.removeprefix("label:"), "(unlabelled)")
        return self.run.metadata.name


def _majority(runs: list[EvalRun]) -> str | None:
    """The maj@k the runs report (the first one any of them lists)."""
    for run in runs:
        for metric in run.spec.metrics:
            if parse_metric(metric)[0] == "maj":
                return metric
    return None


def score_table(
    arms: list[Arm], metric: str, majority: str | None
) -> tuple[list[str], list[dict[str, dict[str, Cell]]]]:
    """(benchmarks in first-seen order, per arm: benchmark -> metric -> cell), the best of each column marked."""
    benchmarks: list[str] = []
    for arm in arms:
        benchmarks += [b for b in arm.scores if b not in benchmarks]
    wanted = [m for m in (metric, majority) if m]
    cells: list[dict[str, dict[str, Cell]]] = []
    for arm in arms:
        row: dict[str, dict[str, Cell]] = {}
        for benchmark, score in arm.scores.items():
            row[benchmark] = {
                name: Cell(value=score.metrics[name].value, stderr=score.metrics[name].stderr)
                for name in wanted
                if name in score.metrics
            }
        cells.append(row)
    for benchmark in benchmarks:
        for name in wanted:
            present = [row[benchmark][name] for row in cells if name in row.get(benchmark, {})]
            top = max((c.value for c in present), default=None)
            for cell in present:
                cell.best = len(present) > 1 and cell.value == top
    return benchmarks, cells


def difference(baseline: RunRecords, other: RunRecords, *, replicates: int, confidence: float, seed: int) -> Delta:
    """The bootstrap difference of two runs' records on one benchmark, or why there is none."""
    if baseline.problems_digest and other.problems_digest and baseline.problems_digest != other.problems_digest:
        return Delta(note="different problems (problemsDigest differs): not comparable")
    try:
        found = paired_bootstrap(
            baseline.correct, other.correct, replicates=replicates, confidence=confidence, seed=seed
        )
    except ValueError as err:
        return Delta(note=str(err))
    return Delta(
        value=found.value, low=found.low, high=found.high, significant=found.significant, problems=found.problems
    )


def _percent(value: float | None, *, signed: bool = False) -> str:
    if value is None:
        return ""
    return f"{100 * value:+.1f}" if signed else f"{100 * value:.1f}"


def table_rows(comparison: Comparison, *, fmt: TableFormat) -> list[dict[str, Any]]:
    """One flat row per arm: the label, each benchmark's metric cells, and its difference from the baseline."""
    out = []
    for row in comparison.rows:
        cells: dict[str, Any] = {"row": row.label + (" (baseline)" if row.baseline else "")}
        for benchmark in comparison.benchmarks:
            scores = row.scores.get(benchmark, {})
            for name in (comparison.metric, comparison.majority):
                if name is None:
                    continue
                cell = scores.get(name)
                text = ""
                if cell is not None:
                    error = f" ± {_percent(cell.stderr)}" if cell.stderr is not None and name.startswith("pass") else ""
                    text = _percent(cell.value) + error
                    if cell.best:
                        text = f"**{text}**" if fmt is TableFormat.markdown else text + BEST
                cells[f"{benchmark} {name}"] = text
            delta = row.differences.get(benchmark)
            header = f"{benchmark} Δ{comparison.metric}"
            if row.baseline:
                cells[header] = "—"
            elif delta is None or delta.value is None:
                cells[header] = f"n/a ({delta.note})" if delta and delta.note else "n/a"
            else:
                interval = f"[{_percent(delta.low, signed=True)}, {_percent(delta.high, signed=True)}]"
                verdict = "significant" if delta.significant else "not significant"
                cells[header] = f"{_percent(delta.value, signed=True)} {interval} {verdict}"
        out.append(cells)
    return out


def caption(comparison: Comparison) -> str:
    """What the table's numbers are: the metrics, the baseline and how the intervals were made."""
    return (
        f"{comparison.metric} ± standard error, {comparison.majority or 'no maj@k'} (%; * best in column); "
        f"Δ: difference from {comparison.baseline}, {100 * comparison.confidence:g}% paired bootstrap interval over "
        "problems"
    )


def _arm(inventory: Inventory, run: EvalRun, store: ArtifactStore) -> Arm:
    fine_tune = traces = None
    ref = run.spec.model.fine_tune_run_ref
    namespace = run.metadata.namespace  # references are namespace-local, whatever -A listed
    if ref is not None:
        found = _maybe(inventory, "FineTuneRun", ref.name, namespace)
        fine_tune = found if isinstance(found, FineTuneRun) else None
        if fine_tune is not None:
            dataset = _maybe(inventory, "TraceDataset", fine_tune.spec.dataset_ref.name, namespace)
            traces = dataset if isinstance(dataset, TraceDataset) else None
    return Arm(run=run, scores=scores_of(run, store), fine_tune=fine_tune, traces=traces)


def _maybe(inventory: Inventory, kind: str, name: str, namespace: str | None) -> Any:
    try:
        return inventory.get(kind, name, namespace).resource
    except CliError:
        return None  # deleted since: the row still compares, it only lacks the training set's properties


def _select(inventory: Inventory, names: list[str], selector: str | None) -> list[EvalRun]:
    if names:
        items = [inventory.get("EvalRun", parse_ref(n, default_kind="EvalRun").name or n) for n in names]
    else:
        items = inventory.list(("EvalRun",), selector)
    runs = []
    for item in items:
        run = item.resource
        if not isinstance(run, EvalRun):
            raise CliError(f"evalrun/{item.name} cannot be read: {item.problem}")
        if run.status is None or run.status.phase != Phase.SUCCEEDED:
            phase = run.status.phase if run.status else Phase.PENDING
            note(f"skipping evalrun/{run.metadata.name}: it is {phase}, not Succeeded")
            continue
        runs.append(run)
    return runs


def compare(
    names: Annotated[
        list[str] | None, typer.Argument(help="EvalRun names (or use --selector).", autocompletion=complete_evalrun)
    ] = None,
    selector: SelectorOpt = None,
    baseline: Annotated[
        str | None,
        typer.Option("--baseline", help="The EvalRun (or row label) others are compared with; default first."),
    ] = None,
    rows: Annotated[
        str, typer.Option("--rows", help="Row labels: run, model, traces (the training set) or label:KEY.")
    ] = "run",
    metric: Annotated[str, typer.Option("--metric", help="The metric compared and bootstrapped.")] = "pass@1",
    replicates: Annotated[
        int, typer.Option("--replicates", help="Bootstrap replicates.", min=100)
    ] = DEFAULT_REPLICATES,
    confidence: Annotated[float, typer.Option("--confidence", help="Interval level.", min=0.5, max=0.999)] = (
        DEFAULT_CONFIDENCE
    ),
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap (results are reproducible).")] = 0,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Also draw scores against a training-set property.")
    ] = None,
    plot_x: Annotated[
        str, typer.Option("--plot-x", help="The property: tokens (trace length p50), count, stage or label:KEY.")
    ] = "tokens",
    artifacts_root: ArtifactsRootOpt = None,
    local: LocalOpt = False,
    root: RootOpt = None,
    namespace: NamespaceOpt = None,
    all_namespaces: AllNamespacesOpt = False,
    output: TableOutputOpt = TableFormat.table,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    request_timeout: RequestTimeoutOpt = 30.0,
) -> None:
    """Compare finished EvalRuns: scores per benchmark, the best marked, and differences from a baseline with
    paired bootstrap intervals."""
    with reported():
        names = names or []
        if bool(names) == bool(selector):
            raise UsageError(
                "name the EvalRuns to compare, or select them with -l",
                "e.g. cotctl compare -l cotlab.dev/experiment=study",
            )
        if metric != "pass@1":
            raise UsageError(
                f"--metric: only pass@1 is bootstrapped (its samples are what the records hold), got {metric}"
            )
        if rows not in ("run", "model", "traces") and not rows.startswith("label:"):
            raise UsageError(f"--rows: expected run, model, traces or label:KEY, got {rows!r}")
        target = Target(kubeconfig, context, namespace, all_namespaces, request_timeout)
        inventory = open_inventory(local=local, root=root, target=target)
        store = ArtifactStore(artifacts_root)
        arms, comparison = comparison_of(
            inventory, store, names, selector, rows=rows, baseline=baseline, metric=metric, replicates=replicates,
            confidence=confidence, seed=seed,
        )  # fmt: skip
        flat = table_rows(comparison, fmt=output)
        title = caption(comparison)
        render(comparison.to_wire(), flat, output, title=title if output is TableFormat.table else None)
        if plot is not None:
            from .plot import draw_plot

            draw_plot(plot, arms, comparison, x=plot_x)
            note(f"wrote {plot}")


def comparison_of(
    inventory: Inventory,
    store: ArtifactStore,
    names: list[str],
    selector: str | None,
    *,
    rows: str,
    baseline: str | None,
    metric: str,
    replicates: int,
    confidence: float,
    seed: int,
) -> tuple[list[Arm], Comparison]:
    """What `cotctl compare` shows, for every view of it (the table, `cotctl report`): the finished EvalRuns named
    or selected, as arms, and their comparison."""
    runs = _select(inventory, names, selector)
    if not runs:
        raise CliError("no finished EvalRun to compare", "see where they are with: cotctl status evalrun")
    arms = [_arm(inventory, run, store) for run in runs]
    comparison = build_comparison(
        arms, rows=rows, baseline=baseline, metric=metric, replicates=replicates, confidence=confidence, seed=seed,
        store=store,
    )  # fmt: skip
    return arms, comparison


def build_comparison(
    arms: list[Arm],
    *,
    rows: str,
    baseline: str | None,
    metric: str,
    replicates: int,
    confidence: float,
    seed: int,
    store: ArtifactStore,
) -> Comparison:
    """The whole comparison: score cells, the baseline, and each row's bootstrap difference per benchmark."""
    majority = _majority([a.run for a in arms])
    benchmarks, cells = score_table(arms, metric, majority)
    labels = [a.label(rows) for a in arms]
    for i, label in enumerate(labels):
        if labels.count(label) > 1:  # two arms with one label (seeds of one model): keep them apart
            labels[i] = f"{label} ({arms[i].run.metadata.name})"
    chosen = 0
    if baseline is not None:
        matches = [i for i, a in enumerate(arms) if baseline in (a.run.metadata.name, labels[i])]
        if not matches:
            valid = ", ".join(a.run.metadata.name for a in arms)
            raise UsageError(f"--baseline: {baseline!r} is none of the compared runs ({valid})")
        chosen = matches[0]
    records: dict[tuple[int, str], RunRecords | CliError] = {}

    def records_of(index: int, benchmark: str) -> RunRecords | CliError:
        if (index, benchmark) not in records:
            try:
                records[(index, benchmark)] = run_records(arms[index].run, benchmark, store)
            except CliError as err:
                records[(index, benchmark)] = err
        return records[(index, benchmark)]

    warned = False
    out_rows = []
    for i, arm in enumerate(arms):
        differences: dict[str, Delta] = {}
        if i != chosen:
            for benchmark in benchmarks:
                if benchmark not in arm.scores or benchmark not in arms[chosen].scores:
                    differences[benchmark] = Delta(note="not scored by both")
                    continue
                base, other = records_of(chosen, benchmark), records_of(i, benchmark)
                failed = next((r for r in (base, other) if isinstance(r, CliError)), None)
                if failed is not None:
                    if not warned:
                        note(f"no differences: {failed.message}" + (f"; {failed.hint}" if failed.hint else ""))
                        warned = True
                    differences[benchmark] = Delta(note="per-sample records not readable")
                    continue
                assert isinstance(base, RunRecords) and isinstance(other, RunRecords)
                differences[benchmark] = difference(
                    base, other, replicates=replicates, confidence=confidence, seed=seed
                )
        out_rows.append(
            ComparisonRow(
                label=labels[i],
                evalrun=arm.run.metadata.name,
                namespace=arm.run.metadata.namespace or "default",
                model=arm.model,
                fine_tune_run=arm.fine_tune.metadata.name if arm.fine_tune else None,
                trace_dataset=arm.traces.metadata.name if arm.traces else None,
                baseline=i == chosen,
                scores=cells[i],
                differences=differences,
            )
        )
    return Comparison(
        metric=metric,
        majority=majority,
        baseline=labels[chosen],
        benchmarks=benchmarks,
        confidence=confidence,
        replicates=replicates,
        rows=out_rows,
    )
