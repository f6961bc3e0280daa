"""`cotctl report`: one self-contained HTML page of a study, from what `cotctl compare` reads.

The table, its intervals and the plot are compare's own (`compare.comparison_of`, `compare.table_rows`,
`compare.title`, `plot.draw_plot`), with compare's default correction (Holm), so the page shows whatever compare
computes over the same arms of training seeds; the page adds the per-problem outcomes (each arm's seeds pooled), the
samples behind them, every seed's training curve and the training sets' statistics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..analysis.artifacts import ArtifactStore
from ..analysis.significance import DEFAULT_CONFIDENCE, DEFAULT_REPLICATES
from ..cluster.kube import Target
from ..resources.inventory import open_inventory
from ..terminal.errors import UsageError, reported
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
)
from ..terminal.output import note


def report(
    selector: SelectorOpt = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="The HTML file to write.")] = Path("report.html"),
    title: Annotated[str | None, typer.Option("--title", help="The page's title (default: the selector).")] = None,
    baseline: BaselineOpt = None,
    rows: RowsOpt = "run",
    replicates: ReplicatesOpt = DEFAULT_REPLICATES,
    confidence: ConfidenceOpt = DEFAULT_CONFIDENCE,
    seed: BootstrapSeedOpt = 0,
    plot_x: Annotated[
        str, typer.Option("--plot-x", help="The plot's x: tokens (trace length p50), count, stage or label:KEY.")
    ] = "tokens",
    samples_per_cell: Annotated[
        int,
        typer.Option(
            "--samples-per-cell",
            help="Completions embedded per arm and problem (every sample's answer is listed).",
            min=0,
        ),
    ] = 4,
    artifacts_root: ArtifactsRootOpt = None,
    local: LocalOpt = False,
    root: RootOpt = None,
    namespace: NamespaceOpt = None,
    all_namespaces: AllNamespacesOpt = False,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    request_timeout: RequestTimeoutOpt = 30.0,
) -> None:
    """Write a study report: compare's table and plot, which problems each arm solves (click for the samples), the
    training curves and the training sets, in one HTML file that needs no server and no network."""
    with reported():
        from ..analysis.corrections import Correction
        from ..analysis.gather import gather_curves, gather_outcomes, gather_training_sets
        from ..analysis.page import Report, build_page
        from .compare import check_rows, comparison_of, table_rows
        from .compare import title as compare_title

        if not selector:
            raise UsageError("select the EvalRuns with -l", "e.g. cotctl report -l cotlab.dev/experiment=study")
        check_rows(rows)
        if output.suffix.lower() not in (".html", ".htm"):
            raise UsageError(f"--output: the report is an HTML file (.html), got {str(output)!r}")
        target = Target(kubeconfig, context, namespace, all_namespaces, request_timeout)
        inventory = open_inventory(local=local, root=root, target=target)
        store = ArtifactStore(artifacts_root)
        arms, comparison = comparison_of(
            inventory, store, [], selector, rows=rows, baseline=baseline, metric="pass@1", replicates=replicates,
            confidence=confidence, seed=seed, correction=Correction.holm,
        )  # fmt: skip
        for line in comparison.notes:
            note(line)
        outcomes, cells = gather_outcomes(arms, comparison, store, samples_per_cell=samples_per_cell)
        page = build_page(
            Report(
                title=title or f"cotlab report: {selector}",
                selection=f"selected by -l {selector}",
                comparison=comparison,
                caption=compare_title(comparison),
                table=table_rows(comparison, fmt=TableFormat.table),
                arms=arms,
                plot_x=plot_x,
                outcomes=outcomes,
                cells=cells,
                curves=gather_curves(arms, comparison, store),
                training_sets=gather_training_sets(arms, comparison),
            )
        )
        output.write_text(page, encoding="utf-8")
        note(f"wrote {output} ({len(page.encode('utf-8')) // 1024} KiB, {len(arms)} arms)")
