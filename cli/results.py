"""`cotctl results --local`: the score table of EvalRuns that ran on this machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from cotlab.api import EvalRun, Phase, Resource
from cotlab.api.evalrun import BenchmarkScore
from cotlab.trainer.core import storage

from .local_store import LocalStore, default_root
from .options import OutputFormat, OutputOpt
from .output import error, render


def scores_of(run: EvalRun) -> dict[str, BenchmarkScore]:
    """A finished run's scores: from its status, or from `scores.json` when they did not fit the 4 KiB
    termination message (the status then holds none, and the file holds them all)."""
    if run.status is None or run.status.phase != Phase.SUCCEEDED:
        return {}  # a failed or running re-run's old scores are not its results
    if run.status.scores:
        return dict(run.status.scores)
    uri = run.status.outputs.scores if run.status.outputs else None
    if uri is None or not storage.exists(uri):
        return {}
    wire = json.loads(storage.read_text(uri))
    return {name: BenchmarkScore.model_validate(score) for name, score in wire.items()}


def score_rows(resources: list[Resource]) -> list[dict[str, Any]]:
    """One row per (EvalRun, benchmark): each metric as a percentage with its standard error."""
    rows = []
    for run in resources:
        if not isinstance(run, EvalRun):
            continue
        for benchmark, score in scores_of(run).items():
            row: dict[str, Any] = {"evalrun": run.metadata.name, "benchmark": benchmark, "problems": score.problems}
            for name, metric in score.metrics.items():
                stderr = f" ± {100 * metric.stderr:.1f}" if metric.stderr is not None else ""
                row[name] = f"{100 * metric.value:.1f}{stderr}"
            row["no answer"] = f"{100 * (score.no_answer_rate or 0):.0f}%"
            row["truncated"] = f"{100 * (score.truncation_rate or 0):.0f}%"
            rows.append(row)
    return rows


def results(
    local: Annotated[bool, typer.Option("--local", help="Read runs from this machine's state.")] = False,
    root: Annotated[Path | None, typer.Option("--root", help="Local state folder (default .cotlab).")] = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Show the scores of finished EvalRuns (pass@k, maj@k with standard errors)."""
    if not local:
        error(
            "cotctl results needs --local in this version", "read a cluster's scores with kubectl get evalruns -o yaml"
        )
        raise typer.Exit(2)
    runs = [r for r in LocalStore(root or default_root()).all() if isinstance(r, EvalRun)]
    data = {
        r.metadata.name: {k: v.to_wire() for k, v in scores_of(r).items()}
        for r in runs
        if r.status is not None and r.status.phase == Phase.SUCCEEDED
    }
    rows = score_rows(list(runs))
    if not rows and output is OutputFormat.table:
        error("no scored EvalRuns yet", "run one with: cotctl run --local -f manifests/examples/quickstart.yaml")
        raise typer.Exit(1)
    render(data, rows, output)
