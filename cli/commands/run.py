"""`cotctl run --local`: run an experiment's manifests on this machine, in dependency order."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from cotlab.api import Resource
from cotlab.api.conditions import phase_condition
from cotlab.api.validation import parse_resource, validate_document

from ..local.plan import PlanError, plan
from ..local.runner import LocalRunner
from ..local.store import LocalStore, default_root
from ..manifests.documents import ManifestError, read_documents
from ..terminal.options import FilesOpt, OutputFormat, OutputOpt
from ..terminal.output import error, render, stderr
from ..terminal.progress import RunDisplay
from .results import score_rows


def resource_rows(resources: list[tuple[Resource, bool, float]]) -> list[dict[str, Any]]:
    """One row per resource: what it is, how it ended, why."""
    rows = []
    for resource, ran, seconds in resources:
        status = resource.status
        last = phase_condition(status.conditions) if status else None  # the condition that explains the phase
        rows.append(
            {
                "resource": f"{resource.kind}/{resource.metadata.name}",
                "phase": status.phase if status else "Pending",
                "ran": "yes" if ran else "no (up to date)" if status and status.phase == "Succeeded" else "no",
                "seconds": round(seconds, 1),
                "reason": last.reason if last else "",
                "message": last.message if last else "",
            }
        )
    return rows


def run(
    files: FilesOpt,
    local: Annotated[bool, typer.Option("--local", help="Run on this machine instead of a cluster.")] = False,
    only: Annotated[list[str] | None, typer.Option("--only", help="Run only these resources (by name).")] = None,
    root: Annotated[Path | None, typer.Option("--root", help="Local state folder (default .cotlab).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Run again even if an earlier run succeeded.")] = False,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Run the manifests' TraceDatasets, FineTuneRuns and EvalRuns in dependency order, then show the scores."""
    if not local:
        error("cotctl run needs --local", "on a cluster, apply the manifests: kubectl apply -f FILE")
        raise typer.Exit(2)
    try:
        docs = [(source, doc) for source, doc in read_documents(files) if doc is not None]
    except ManifestError as exc:
        error(str(exc))
        raise typer.Exit(1) from None
    problems = [e for source, doc in docs for e in validate_document(doc, source)]
    if problems:
        for problem in problems:
            error(str(problem))
        raise typer.Exit(1)
    resources = [parse_resource(doc) for _, doc in docs]
    if only:
        unknown = sorted(set(only) - {r.metadata.name for r in resources})
        if unknown:
            error(f"--only: no resource named {', '.join(unknown)} in the given manifests")
            raise typer.Exit(2)
        resources = [r for r in resources if r.metadata.name in only]
    store = LocalStore(root or default_root())
    try:
        ordered = plan(resources, known=lambda kind, ns, name: store.load(kind, ns, name) is not None)
    except PlanError as exc:
        error(str(exc), "or run the dependency first with cotctl run --local")
        raise typer.Exit(1) from None

    finished: list[tuple[Resource, bool, float]] = []
    with RunDisplay(stderr) as display:
        runner = LocalRunner(store, on_marker=display.marker)
        for resource in ordered:
            display.started(resource)
            started = time.monotonic()
            result, ran = runner.run(resource, force=force)
            display.finished(resource, ran)
            finished.append((result, ran, time.monotonic() - started))
    rows = resource_rows(finished)
    data = {
        "resources": [r.to_wire() for r, _, _ in finished],
        "runs": rows,  # what the table shows, seconds included (bench/real_node.py times the stages with it)
    }
    render(data, rows, output)
    scores = score_rows([r for r, _, _ in finished])
    if output is OutputFormat.table and scores:
        render({}, scores, output, title="scores")
    if any(r.status is None or r.status.phase != "Succeeded" for r, _, _ in finished):
        raise typer.Exit(1)
