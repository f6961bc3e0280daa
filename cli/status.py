"""`cotctl status`: one table of datasets, fine-tunes and evals: phase, progress, loss, ETA, the main score, age."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
import yaml
from pydantic import Field

from cotlab.api import EvalRun, FineTuneRun, Phase, TraceDataset
from cotlab.api.conditions import Condition, phase_condition

from .completion import complete_ref
from .durations import human_duration, seconds_since
from .errors import reported
from .inventory import ALL_KINDS, Inventory, Listed, open_inventory
from .kube import Target
from .options import (
    AllNamespacesOpt,
    ContextOpt,
    KubeconfigOpt,
    ListFormat,
    ListOutputOpt,
    LocalOpt,
    NamespaceOpt,
    RequestTimeoutOpt,
    RootOpt,
    SelectorOpt,
    WatchOpt,
)
from .output import View, note, render, stdout, table_of
from .refs import parse_ref


class StatusRow(View):
    """What `cotctl status -o json` prints per resource."""

    namespace: str
    kind: str
    name: str
    phase: str
    reason: str | None = None
    message: str | None = None
    attempts: int | None = None
    progress: str = ""
    percent: float | None = None
    loss: float | None = None
    eta_seconds: float | None = None
    score: str = ""
    scores: dict[str, dict[str, float]] = Field(default_factory=dict)
    age_seconds: float | None = None
    output: str | None = None
    digest: str | None = None


def _created(item: Listed) -> object:
    """The creation time; local state has none, so its first condition's time stands in."""
    meta = item.body.get("metadata") or {}
    if meta.get("creationTimestamp"):
        return meta["creationTimestamp"]
    times = [c.get("lastTransitionTime") for c in (item.body.get("status") or {}).get("conditions") or []]
    return min((t for t in times if t), default=None)


def _percent(value: float | None) -> str:
    return "" if value is None else f" ({value:.0f}%)"


def main_score(run: EvalRun) -> tuple[str, dict[str, dict[str, float]]]:
    """The first metric of each benchmark, in percent with its standard error ("aime24 9.3±1.2"), and all values."""
    if run.status is None or not run.status.scores:
        return "", {}
    first = run.spec.metrics[0]
    shown, values = [], {}
    for benchmark, score in run.status.scores.items():
        values[benchmark] = {name: metric.value for name, metric in score.metrics.items()}
        metric = score.metrics.get(first)
        if metric is not None:
            error = f"±{100 * metric.stderr:.1f}" if metric.stderr is not None else ""
            shown.append(f"{benchmark} {100 * metric.value:.1f}{error}")
    return (f"{first}: " + ", ".join(shown)) if shown else "", values


def status_row(item: Listed, now: datetime) -> StatusRow:
    """The row of one resource: a pure function of the stored object and `now`."""
    raw_status = item.body.get("status") or {}
    row = StatusRow(
        namespace=item.namespace,
        kind=item.kind,
        name=item.name,
        phase=str(raw_status.get("phase") or Phase.PENDING),
        age_seconds=seconds_since(_created(item), now),
    )
    resource = item.resource
    if resource is None:
        row.reason, row.message = "Unreadable", item.problem
        return row
    status = resource.status
    if status is None:
        return row
    deciding: Condition | None = phase_condition(status.conditions)
    if deciding is not None:
        row.reason, row.message = deciding.reason, deciding.message
    finished = row.phase in (Phase.SUCCEEDED, Phase.FAILED)
    if isinstance(resource, TraceDataset) and resource.status is not None:
        ds = resource.status
        if ds.count is not None:
            row.progress = f"{ds.count} traces"
        if ds.stats is not None and ds.stats.tokens is not None:
            row.score = f"tokens p50 {ds.stats.tokens.p50}, max {ds.stats.tokens.max}"
        if ds.artifact is not None:
            row.output, row.digest = ds.artifact.uri, ds.artifact.digest
    elif isinstance(resource, FineTuneRun) and resource.status is not None:
        ft = resource.status
        row.attempts = ft.attempts or None
        if ft.progress is not None:
            steps = ft.progress
            total = f"/{steps.total_steps}" if steps.total_steps is not None else ""
            row.progress = f"step {steps.step}{total}{_percent(steps.percent)}"
            row.percent, row.loss = steps.percent, steps.loss
            row.eta_seconds = None if finished else steps.eta_seconds
        if ft.outputs is not None and ft.outputs.model is not None:
            row.output, row.digest = ft.outputs.model.uri, ft.outputs.model.digest
    elif isinstance(resource, EvalRun) and resource.status is not None:
        ev = resource.status
        row.attempts = ev.attempts or None
        if ev.progress is not None and not finished:
            samples = ev.progress
            total = f"/{samples.total}" if samples.total is not None else ""
            row.progress = f"{samples.benchmark or ''} {samples.done}{total}{_percent(samples.percent)}".strip()
            row.percent = samples.percent
            elapsed = seconds_since(ev.start_time, now)
            if elapsed and samples.done and samples.total:
                # The current benchmark's ETA at the rate so far (samples take similar time within a benchmark).
                row.eta_seconds = elapsed * (samples.total - samples.done) / samples.done
        row.score, row.scores = main_score(resource)
        if row.phase == Phase.SUCCEEDED and not ev.scores:
            row.score = "in the scores file: cotctl results " + item.name
        if ev.outputs is not None:
            row.output = ev.outputs.samples
    return row


def table_rows(rows: list[StatusRow], *, wide: bool, namespaces: bool) -> list[dict[str, Any]]:
    """The table's cells; NAMESPACE only across namespaces, the reasons and outputs only with -o wide."""
    cells = []
    for row in rows:
        cell: dict[str, Any] = {"namespace": row.namespace} if namespaces else {}
        cell |= {
            "name": f"{row.kind.lower()}/{row.name}",
            "phase": row.phase,
            "progress": row.progress,
            "loss": "" if row.loss is None else f"{row.loss:.4g}",
            "eta": human_duration(row.eta_seconds),
            "score": row.score,
            "age": human_duration(row.age_seconds),
        }
        if wide:
            cell |= {"attempts": row.attempts or "", "reason": row.reason or "", "message": row.message or ""}
            cell |= {"output": row.output or "", "digest": row.digest or ""}
        cells.append(cell)
    return cells


def _snapshot(inventory: Inventory, kinds: tuple[str, ...], name: str | None, selector: str | None) -> list[StatusRow]:
    items = [inventory.get(kinds[0], name)] if name else inventory.list(kinds, selector)
    now = datetime.now(UTC)
    return [status_row(item, now) for item in items]


def _show(rows: list[StatusRow], output: ListFormat, *, namespaces: bool, watching: bool) -> None:
    data = {"items": [r.to_wire() for r in rows]}
    if watching and output is ListFormat.json:
        stdout.out(json.dumps(data, separators=(",", ":")), highlight=False)  # one document per line
    elif watching and output is ListFormat.yaml:
        stdout.out("---\n" + yaml.safe_dump(data, sort_keys=False).rstrip(), highlight=False)
    else:
        names = [f"{r.kind.lower()}.cotlab.dev/{r.name}" for r in rows]
        cells = table_rows(rows, wide=output is ListFormat.wide, namespaces=namespaces)
        render(data, cells, output, names=names)


def status(
    what: Annotated[
        str | None,
        typer.Argument(
            help="KIND or KIND/NAME (evalrun, finetunerun, tracedataset); all kinds if omitted.",
            autocompletion=complete_ref,
        ),
    ] = None,
    local: LocalOpt = False,
    root: RootOpt = None,
    namespace: NamespaceOpt = None,
    all_namespaces: AllNamespacesOpt = False,
    selector: SelectorOpt = None,
    watch: WatchOpt = False,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between redraws with --watch.")] = 2.0,
    output: ListOutputOpt = ListFormat.table,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    request_timeout: RequestTimeoutOpt = 30.0,
) -> None:
    """Show datasets, fine-tunes and evals: phase, progress (step/total, loss, ETA), the main score and age."""
    with reported():
        ref = parse_ref(what) if what else None
        kinds = (ref.kind,) if ref else ALL_KINDS
        target = Target(kubeconfig, context, namespace, all_namespaces, request_timeout)
        inventory = open_inventory(local=local, root=root, target=target)
        name = ref.name if ref else None
        namespaces = inventory.namespace is None
        rows = _snapshot(inventory, kinds, name, selector)
        if not watch:
            if not rows and output in (ListFormat.table, ListFormat.wide):
                where = "in any namespace" if namespaces else f'in namespace "{inventory.namespace}"'
                note(f"No resources found {where}.")
            _show(rows, output, namespaces=namespaces, watching=False)
            return
        _watch(inventory, kinds, name, selector, output, interval, namespaces, rows)


def _watch(
    inventory: Inventory,
    kinds: tuple[str, ...],
    name: str | None,
    selector: str | None,
    output: ListFormat,
    interval: float,
    namespaces: bool,
    rows: list[StatusRow],
) -> None:
    """Redraw in place on a terminal; elsewhere print the view again each time it changed. Ctrl-C ends it."""
    in_place = sys.stdout.isatty() and output in (ListFormat.table, ListFormat.wide)
    try:
        if in_place:
            from rich.live import Live

            def draw(rows: list[StatusRow]) -> Any:
                return table_of(table_rows(rows, wide=output is ListFormat.wide, namespaces=namespaces))

            with Live(draw(rows), console=stdout, auto_refresh=False) as live:
                while True:
                    time.sleep(interval)
                    live.update(draw(_snapshot(inventory, kinds, name, selector)), refresh=True)
        shown = None
        while True:
            # Age moves every second: only a change in anything else is worth printing again.
            key = [r.model_copy(update={"age_seconds": None, "eta_seconds": None}) for r in rows]
            if key != shown:
                _show(rows, output, namespaces=namespaces, watching=True)
                if output in (ListFormat.table, ListFormat.wide):
                    stdout.out("")
                shown = key
            time.sleep(interval)
            rows = _snapshot(inventory, kinds, name, selector)
    except KeyboardInterrupt:
        return
