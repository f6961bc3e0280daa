"""`cotctl compare`: the study's table, with honest uncertainty.

Rows are arms: EvalRuns grouped by their row label (run, model, training set or a label such as
cotlab.dev/arm), each EvalRun of an arm one training seed of its recipe (`arms`). Columns are benchmarks: the
metric ± its standard error over problems and seeds, and maj@k, the best of each column marked. Then what no
score table gives: each arm's difference from a baseline arm, with a paired bootstrap interval over problems and
training seeds (`significance`), corrected across every interval the table prints (`corrections`, Holm by
default), and marked significant when it excludes 0. The bootstrap reads the per-sample records from the
artifact store (`--artifacts-root` for a claim). The computation is `comparison.build_comparison`; this module
only selects the runs and renders the result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cotlab.api import EvalRun, FineTuneRun, Phase, TraceDataset

from ..analysis.arms import ROWS, Arm, Evaluation, group_arms
from ..analysis.artifacts import ArtifactStore
from ..analysis.comparison import Comparison, build_comparison
from ..analysis.corrections import Correction
from ..analysis.evaluations import run_records, scores_of
from ..analysis.significance import DEFAULT_CONFIDENCE, DEFAULT_REPLICATES
from ..cluster.kube import Target
from ..resources.completion import complete_evalrun
from ..resources.inventory import Inventory, open_inventory
from ..resources.refs import parse_ref
from ..terminal.errors import CliError, UsageError, reported
from ..terminal.options import (
    AllNamespacesOpt,
    ArtifactsRootOpt,
    BaselineOpt,
    BootstrapSeedOpt,
    ConfidenceOpt,
    ContextOpt,
    KubeconfigOpt,
    LocalOpt,
    NamespaceOpt,
    ReplicatesOpt,
    RequestTimeoutOpt,
    RootOpt,
    RowsOpt,
    SelectorOpt,
    TableFormat,
    TableOutputOpt,
)
from ..terminal.output import note, render

BEST = " *"  # appended to the best cell of a column (bold in Markdown)


def _percent(value: float | None, *, signed: bool = False) -> str:
    if value is None:
        return ""
    return f"{100 * value:+.1f}" if signed else f"{100 * value:.1f}"


def title(comparison: Comparison) -> str:
    """What the table's numbers are: the cells, the intervals' method, level and correction."""
    family = f", {comparison.correction_name} over {comparison.intervals} intervals"
    if comparison.correction is Correction.none:
        family = ", not corrected for the other intervals"
    return (
        f"{comparison.metric} ± standard error over problems and training seeds, {comparison.majority or 'no maj@k'}"
        f" (%; * best in column; seeds: the training seeds averaged). Δ: difference from {comparison.baseline},"
        f" {100 * comparison.confidence:g}% intervals by {comparison.method}{family}"
    )


def table_rows(comparison: Comparison, *, fmt: TableFormat) -> list[dict[str, Any]]:
    """One flat row per arm: the label, each benchmark's metric cells, and its difference from the baseline."""
    out = []
    for row in comparison.rows:
        cells: dict[str, Any] = {"row": row.label + (" (baseline)" if row.baseline else "")}
        cells["seeds"] = ",".join(map(str, row.training_seeds)) if row.training_seeds else "-"
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
                level = f" at {100 * delta.level:.4g}%" if delta.level is not None else ""
                cells[header] = f"{_percent(delta.value, signed=True)} {interval}{level} {verdict}"
        out.append(cells)
    return out


def check_rows(rows: str) -> None:
    """--rows names a row label compare knows."""
    if rows not in ROWS and not rows.startswith("label:"):
        raise UsageError(f"--rows: expected run, model, traces or label:KEY, got {rows!r}")


def _evaluation(inventory: Inventory, run: EvalRun, store: ArtifactStore) -> Evaluation:
    fine_tune = traces = None
    ref = run.spec.model.fine_tune_run_ref
    namespace = run.metadata.namespace  # references are namespace-local, whatever -A listed
    if ref is not None:
        found = _maybe(inventory, "FineTuneRun", ref.name, namespace)
        fine_tune = found if isinstance(found, FineTuneRun) else None
        if fine_tune is not None:
            dataset = _maybe(inventory, "TraceDataset", fine_tune.spec.dataset_ref.name, namespace)
            traces = dataset if isinstance(dataset, TraceDataset) else None
    return Evaluation(run=run, scores=scores_of(run, store), fine_tune=fine_tune, traces=traces)


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
    correction: Correction,
) -> tuple[list[Arm], Comparison]:
    """What `cotctl compare` shows, for every view of it (the table, `cotctl report`): the finished EvalRuns named
    or selected, grouped into arms of training seeds, and their comparison."""
    runs = _select(inventory, names, selector)
    if not runs:
        raise CliError("no finished EvalRun to compare", "see where they are with: cotctl status evalrun")
    arms, notes = group_arms([_evaluation(inventory, run, store) for run in runs], rows)
    comparison = build_comparison(
        arms, baseline=baseline, metric=metric, replicates=replicates, confidence=confidence, seed=seed,
        read=lambda run, benchmark: run_records(run, benchmark, store), correction=correction, notes=notes,
    )  # fmt: skip
    return arms, comparison


def compare(
    names: Annotated[
        list[str] | None, typer.Argument(help="EvalRun names (or use --selector).", autocompletion=complete_evalrun)
    ] = None,
    selector: SelectorOpt = None,
    baseline: BaselineOpt = None,
    rows: RowsOpt = "run",
    metric: Annotated[str, typer.Option("--metric", help="The metric compared and bootstrapped.")] = "pass@1",
    replicates: ReplicatesOpt = DEFAULT_REPLICATES,
    confidence: ConfidenceOpt = DEFAULT_CONFIDENCE,
    seed: BootstrapSeedOpt = 0,
    correction: Annotated[
        Correction,
        typer.Option(
            "--correction",
            help="Correction across the intervals shown: holm (family-wise), bh (Benjamini-Hochberg) or none.",
        ),
    ] = Correction.holm,
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
    paired bootstrap intervals over problems and training seeds, corrected across the table."""
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
        check_rows(rows)
        target = Target(kubeconfig, context, namespace, all_namespaces, request_timeout)
        inventory = open_inventory(local=local, root=root, target=target)
        store = ArtifactStore(artifacts_root)
        arms, comparison = comparison_of(
            inventory, store, names, selector, rows=rows, baseline=baseline, metric=metric, replicates=replicates,
            confidence=confidence, seed=seed, correction=correction,
        )  # fmt: skip
        for line in comparison.notes:
            note(line)
        flat = table_rows(comparison, fmt=output)
        render(comparison.to_wire(), flat, output, title=title(comparison) if output is TableFormat.table else None)
        if plot is not None:
            from ..analysis.plot import draw_plot

            draw_plot(plot, arms, comparison, x=plot_x)
            note(f"wrote {plot}")
