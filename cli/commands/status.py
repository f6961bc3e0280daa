"""`cotctl status`: one table of datasets, fine-tunes and evals: phase, progress, loss, ETA, the main score, age.

Rows are read from the stored objects as they are, the way kubectl reads printer columns: the API server has
already checked each status against the CRD schema, and not building the typed models keeps `cotctl status`
within 2x of `kubectl get` (bench/cli_status.py). A status of another shape (written under an older CRD) gives
an "Unreadable" row naming the field, never a crash.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
import yaml

from cotlab.api.metrics import DEFAULT_METRICS
from cotlab.api.phases import Phase, deciding_type

from ..cluster.kube import Target
from ..resources.completion import complete_ref
from ..resources.inventory import ALL_KINDS, Inventory, Listed, open_inventory
from ..resources.refs import parse_ref
from ..terminal.durations import human_duration, seconds_since
from ..terminal.errors import reported
from ..terminal.options import (
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
from ..terminal.output import note, render, stdout, table_of


@dataclasses.dataclass
class StatusRow:
    """What `cotctl status -o json` prints per resource (camelCase; unset fields left out)."""

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
    scores: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    age_seconds: float | None = None
    output: str | None = None
    digest: str | None = None
    arm: str | None = None  # the cotlab.dev/arm label
    seed: int | None = None  # the training seed: a FineTuneRun's, or that of the FineTuneRun an EvalRun evaluates
    seeds: int | None = None  # training seeds listed for the arm (its FineTuneRuns' distinct seeds)

    def to_wire(self) -> dict[str, Any]:
        values = ((key, getattr(self, name)) for name, key in _WIRE_NAMES.items())
        return {key: value for key, value in values if value is not None}


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(word.capitalize() for word in rest)


_WIRE_NAMES = {field.name: _camel(field.name) for field in dataclasses.fields(StatusRow)}


class Unreadable(ValueError):
    """A status field of another type than the CRD gives it."""


_NUMBER = (int, float)


def _get(obj: dict[str, Any], path: str, want: type | tuple[type, ...], *, where: str = "status") -> Any:
    """The value at a dotted path below `where`, or None where any part is missing; a value of another type is
    `Unreadable`, naming the field."""
    value: Any = obj
    for key in path.split("."):
        if value is None:
            return None
        if not isinstance(value, dict):
            raise Unreadable(f"{where}.{path}: expected an object at {key!r}, got {value!r}")
        value = value.get(key)
    if value is not None and (not isinstance(value, want) or isinstance(value, bool)):
        raise Unreadable(f"{where}.{path}: unexpected value {value!r}")
    return value


def _created(metadata: dict[str, Any], status: dict[str, Any]) -> object:
    """The creation time; local state has none, so its first condition's time stands in."""
    if metadata.get("creationTimestamp"):
        return metadata["creationTimestamp"]
    conditions = status.get("conditions")
    times = (
        [c.get("lastTransitionTime") for c in conditions if isinstance(c, dict)] if isinstance(conditions, list) else []
    )
    return min((t for t in times if isinstance(t, str)), default=None)


ARM_LABEL = "cotlab.dev/arm"
"""The label that makes resources one arm of an experiment: one FineTuneRun (and EvalRun) per training seed."""


def with_arms(rows: list[StatusRow], items: list[Listed]) -> list[StatusRow]:
    """Rows with their arm and training seed, and the arm's seed count over the FineTuneRuns listed with them."""
    tunes = {(r.namespace, r.name): r for r in rows if r.kind == "FineTuneRun"}
    for row, item in zip(rows, items, strict=True):
        metadata, spec = item.body.get("metadata") or {}, item.body.get("spec") or {}
        arm = (metadata.get("labels") or {}).get(ARM_LABEL)
        row.arm = arm if isinstance(arm, str) else None
        if row.kind == "EvalRun" and row.reason != "Unreadable":
            ref = _get(spec, "model.fineTuneRunRef.name", str, where="spec")
            tune = tunes.get((row.namespace, ref)) if ref else None
            row.seed = tune.seed if tune else None
    seeds: dict[tuple[str, str], set[int]] = {}
    for row in rows:
        if row.kind == "FineTuneRun" and row.arm is not None and row.seed is not None:
            seeds.setdefault((row.namespace, row.arm), set()).add(row.seed)
    for row in rows:
        if row.arm is not None:
            row.seeds = len(seeds.get((row.namespace, row.arm), ())) or None
    return rows


def _arm_cell(row: StatusRow) -> str:
    """ "qwq-20, seed 1 of 3": the arm, this resource's training seed, and how many seeds the arm has."""
    if row.arm is None:
        return ""
    seeds = "" if row.seeds is None else f"{row.seeds} seed{'s' if row.seeds != 1 else ''}"
    if row.seed is not None and row.seeds is not None:
        return f"{row.arm}, seed {row.seed} of {seeds}"
    return f"{row.arm} ({seeds})" if seeds else row.arm


def _percent(value: float | None) -> str:
    return "" if value is None else f" ({value:.0f}%)"


def main_score(spec: dict[str, Any], status: dict[str, Any]) -> tuple[str, dict[str, dict[str, float]]]:
    """An EvalRun's first metric per benchmark, in percent with its standard error ("aime24 9.3±1.2"), and all
    values."""
    scores = _get(status, "scores", dict) or {}
    if not scores:
        return "", {}
    first = (_get(spec, "metrics", list, where="spec") or DEFAULT_METRICS)[0]
    shown, values = [], {}
    for benchmark, score in scores.items():
        where = f"status.scores.{benchmark}"
        metrics = _get(score, "metrics", dict, where=where) or {}
        values[benchmark] = {m: _get(metrics, f"{m}.value", _NUMBER, where=f"{where}.metrics") for m in metrics}
        if first in metrics:
            value = _get(metrics, f"{first}.value", _NUMBER, where=f"{where}.metrics")
            stderr = _get(metrics, f"{first}.stderr", _NUMBER, where=f"{where}.metrics")
            error = f"±{100 * stderr:.1f}" if stderr is not None else ""
            shown.append(f"{benchmark} {100 * value:.1f}{error}")
    return (f"{first}: " + ", ".join(shown)) if shown else "", values


def status_row(item: Listed, now: datetime) -> StatusRow:
    """The row of one resource: a pure function of the stored object and `now`."""
    raw = item.body.get("status")
    status = raw if isinstance(raw, dict) else {}
    row = StatusRow(
        namespace=item.namespace,
        kind=item.kind,
        name=item.name,
        phase=str(status.get("phase") or Phase.PENDING),
        age_seconds=seconds_since(_created(item.body.get("metadata") or {}, status), now),
    )
    try:
        if raw is not None and not isinstance(raw, dict):
            raise Unreadable(f"status: expected an object, got {raw!r}")
        _fill(row, item, status, now)
    except Unreadable as err:
        row.reason, row.message = "Unreadable", str(err)
    return row


def _fill(row: StatusRow, item: Listed, status: dict[str, Any], now: datetime) -> None:
    conditions = [c for c in _get(status, "conditions", list) or [] if isinstance(c, dict)]
    deciding = deciding_type((str(c.get("type")), str(c.get("status"))) for c in conditions)
    if deciding is not None:
        condition = next(c for c in conditions if c.get("type") == deciding and c.get("status") == "True")
        row.reason, row.message = condition.get("reason"), condition.get("message")
    _FILL_BY_KIND[item.kind](row, item.body, status, now)


def _fill_dataset(row: StatusRow, body: dict[str, Any], status: dict[str, Any], now: datetime) -> None:
    count = _get(status, "count", int)
    if count is not None:
        row.progress = f"{count} traces"
    if _get(status, "stats.tokens", dict) is not None:
        p50, longest = _get(status, "stats.tokens.p50", _NUMBER), _get(status, "stats.tokens.max", _NUMBER)
        row.score = f"tokens p50 {p50}, max {longest}"
    appended = _get(status, "stats.answersAppended", int)
    if appended:  # answerInBoxed changed these traces: say so wherever the dataset is shown
        row.score = ", ".join(filter(None, [row.score, f"{appended} given a boxed answer"]))
    row.output, row.digest = _get(status, "artifact.uri", str), _get(status, "artifact.digest", str)


def _fill_fine_tune(row: StatusRow, body: dict[str, Any], status: dict[str, Any], now: datetime) -> None:
    row.attempts = _get(status, "attempts", int) or None
    seed = _get(body.get("spec") or {}, "training.seed", int, where="spec")
    row.seed = 0 if seed is None else seed  # the API's default
    if _get(status, "progress", dict) is not None:
        step, total = _get(status, "progress.step", int), _get(status, "progress.totalSteps", int)
        row.percent, row.loss = _get(status, "progress.percent", _NUMBER), _get(status, "progress.loss", _NUMBER)
        row.progress = f"step {step}{'' if total is None else f'/{total}'}{_percent(row.percent)}"
        finished = row.phase in (Phase.SUCCEEDED, Phase.FAILED)
        row.eta_seconds = None if finished else _get(status, "progress.etaSeconds", _NUMBER)
    row.output, row.digest = _get(status, "outputs.model.uri", str), _get(status, "outputs.model.digest", str)


def _fill_eval(row: StatusRow, body: dict[str, Any], status: dict[str, Any], now: datetime) -> None:
    row.attempts = _get(status, "attempts", int) or None
    if _get(status, "progress", dict) is not None and row.phase not in (Phase.SUCCEEDED, Phase.FAILED):
        benchmark = _get(status, "progress.benchmark", str) or ""
        done, total = _get(status, "progress.done", int) or 0, _get(status, "progress.total", int)
        row.percent = _get(status, "progress.percent", _NUMBER)
        row.progress = f"{benchmark} {done}{'' if total is None else f'/{total}'}{_percent(row.percent)}".strip()
        elapsed = seconds_since(_get(status, "startTime", str), now)
        if elapsed and done and total:
            # The current benchmark's ETA at the rate so far (samples take similar time within a benchmark).
            row.eta_seconds = elapsed * (total - done) / done
    row.score, row.scores = main_score(body.get("spec") or {}, status)
    if row.phase == Phase.SUCCEEDED and not row.scores:
        row.score = "in the scores file: cotctl results " + row.name
    row.output = _get(status, "outputs.samples", str)


_FILL_BY_KIND = {"TraceDataset": _fill_dataset, "FineTuneRun": _fill_fine_tune, "EvalRun": _fill_eval}


def table_rows(rows: list[StatusRow], *, wide: bool, namespaces: bool) -> list[dict[str, Any]]:
    """The table's cells; NAMESPACE only across namespaces, ARM only when a resource has one, the reasons and
    outputs only with -o wide."""
    cells = []
    arms = any(row.arm is not None for row in rows)
    for row in rows:
        cell: dict[str, Any] = {"namespace": row.namespace} if namespaces else {}
        cell |= {"name": f"{row.kind.lower()}/{row.name}", **({"arm": _arm_cell(row)} if arms else {})}
        cell |= {
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
    return with_arms([status_row(item, now) for item in items], items)


def _show(rows: list[StatusRow], output: ListFormat, *, namespaces: bool, watching: bool) -> None:
    data = {"items": [r.to_wire() for r in rows]} if output in (ListFormat.json, ListFormat.yaml) else None
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
            key = [dataclasses.replace(r, age_seconds=None, eta_seconds=None) for r in rows]
            if key != shown:
                _show(rows, output, namespaces=namespaces, watching=True)
                if output in (ListFormat.table, ListFormat.wide):
                    stdout.out("")
                shown = key
            time.sleep(interval)
            rows = _snapshot(inventory, kinds, name, selector)
    except KeyboardInterrupt:
        return
