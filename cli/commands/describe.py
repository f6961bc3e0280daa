"""`cotctl describe KIND/NAME`: spec summary, conditions, children (Jobs, pods, exit codes), events, outputs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from pydantic import Field

from cotlab.api import EvalRun, FineTuneRun, Resource, TraceDataset
from cotlab.api.podcontract import STAGE_BY_KIND

from ..analysis.arms import model_summary
from ..cluster.kube import Cluster, Target
from ..cluster.pods import COMPLETION_INDEX, by_age, container_state, pod_selector
from ..resources.completion import complete_ref
from ..resources.inventory import ClusterInventory, Listed, open_inventory
from ..resources.refs import parse_ref
from ..terminal.durations import human_duration, seconds_since
from ..terminal.errors import reported
from ..terminal.options import (
    ContextOpt,
    KubeconfigOpt,
    LocalOpt,
    NamespaceOpt,
    OutputFormat,
    OutputOpt,
    RequestTimeoutOpt,
    RootOpt,
)
from ..terminal.output import render, stdout, table_of
from ..terminal.views import View


class Child(View):
    """A Job or pod the operator made for the resource."""

    kind: str
    name: str
    status: str
    detail: str = ""
    exit_code: int | None = None
    rank: int | None = None
    age_seconds: float | None = None


class Event(View):
    type: str
    reason: str
    object: str
    message: str
    count: int = 1
    age_seconds: float | None = None


class Description(View):
    """What `cotctl describe -o json` prints."""

    kind: str
    name: str
    namespace: str
    phase: str
    spec: dict[str, str]
    conditions: list[dict[str, Any]] = Field(default_factory=list)
    children: list[Child] = Field(default_factory=list)
    events: list[Event] = Field(default_factory=list)
    outputs: dict[str, str] = Field(default_factory=dict)


def spec_summary(resource: Resource) -> dict[str, str]:
    """The few spec fields that say what the resource does, as short strings (a pure function)."""
    spec = resource.spec
    summary: dict[str, str] = {}
    if isinstance(resource, TraceDataset):
        source = resource.spec.source
        if source.uri:
            summary["source"] = source.uri
        elif source.huggingface:
            summary["source"] = f"hf {source.huggingface.repo}@{source.huggingface.revision}"
        elif source.config_map:
            summary["source"] = f"configMap {source.config_map.name}/{source.config_map.key}"
        elif source.generate:
            summary["source"] = "generate (rejection sampling)"
        select = resource.spec.select
        count = select.count if select.count is not None else "all"
        summary["select"] = f"{count} traces, {select.strategy}, seed {select.seed}"
    elif isinstance(resource, FineTuneRun):
        ft = resource.spec
        summary["baseModel"] = model_summary(ft.base_model)
        summary["dataset"] = ft.dataset_ref.name
        t = ft.training
        steps = f"{t.max_steps} steps" if t.max_steps else f"{t.epochs:g} epochs"
        summary["method"] = ft.method + (f" (r={ft.lora.r}, alpha={ft.lora.alpha})" if ft.lora else "")
        summary["training"] = f"{steps}, lr {t.learning_rate:g} {t.schedule}, seed {t.seed}"
        d = ft.distributed
        summary["distributed"] = f"{d.nodes} node(s) x {d.gpus_per_node} GPU(s), {d.strategy}"
        summary["suspend"] = str(ft.suspend).lower()
    elif isinstance(resource, EvalRun):
        ev = resource.spec
        model = ev.model
        summary["model"] = (
            f"fineTuneRun {model.fine_tune_run_ref.name}" if model.fine_tune_run_ref else model_summary(model.source)  # type: ignore[arg-type]  # the validator requires one of them
        )
        summary["benchmarks"] = ", ".join(
            b.name + (f" ({b.uri})" if b.uri else "") + (f" limit {b.limit}" if b.limit else "") for b in ev.benchmarks
        )
        s = ev.sampling
        summary["sampling"] = (
            f"{s.samples} samples, temperature {s.temperature:g}, maxTokens {s.max_tokens}, seed {s.seed}"
        )
        summary["metrics"] = ", ".join(ev.metrics)
        summary["engine"] = ev.engine.name
        summary["suspend"] = str(ev.suspend).lower()
    if spec.queue_name:
        summary["queue"] = spec.queue_name
    return summary


def outputs_of(resource: Resource) -> dict[str, str]:
    """Where the resource's results are, with their digests."""
    out: dict[str, str] = {}
    if isinstance(resource, TraceDataset) and resource.status is not None:
        ds = resource.status
        if ds.artifact:
            out["artifact"], out["digest"] = ds.artifact.uri, ds.artifact.digest
        if ds.count is not None:
            out["count"] = str(ds.count)
        if ds.stats and ds.stats.tokens:
            tk = ds.stats.tokens
            out["tokens"] = f"min {tk.min}, p50 {tk.p50}, p90 {tk.p90}, max {tk.max}"
    elif isinstance(resource, FineTuneRun) and resource.status is not None:
        ft = resource.status
        if ft.outputs and ft.outputs.model:
            out["model"], out["digest"] = ft.outputs.model.uri, ft.outputs.model.digest
        if ft.last_checkpoint:
            out["lastCheckpoint"] = ft.last_checkpoint
    elif isinstance(resource, EvalRun) and resource.status is not None:
        ev = resource.status
        if ev.outputs and ev.outputs.samples:
            out["samples"] = ev.outputs.samples
        if ev.outputs and ev.outputs.scores:
            out["scores"] = ev.outputs.scores
        for benchmark, score in ev.scores.items():
            if score.problems_digest:
                out[f"problems[{benchmark}]"] = score.problems_digest
    return out


def job_child(job: dict[str, Any], now: datetime) -> Child:
    status = job.get("status") or {}
    done = next(
        (
            c["type"]
            for c in status.get("conditions") or []
            if c.get("status") == "True" and c["type"] in ("Complete", "Failed")
        ),
        None,
    )
    suspended = (job.get("spec") or {}).get("suspend")
    state = done or ("Suspended" if suspended else "Active" if status.get("active") else "Pending")
    counts = {key: status.get(key) or 0 for key in ("succeeded", "failed", "active")}
    detail = ", ".join(f"{count} {key}" for key, count in counts.items())
    return Child(
        kind="Job",
        name=job["metadata"]["name"],
        status=state,
        detail=detail,
        age_seconds=seconds_since(job["metadata"].get("creationTimestamp"), now),
    )


def pod_child(pod: dict[str, Any], container: str, now: datetime) -> Child:
    """A pod's phase, node and, once its container ended, the exit code and reason."""
    meta = pod["metadata"]
    phase = (pod.get("status") or {}).get("phase") or "Pending"
    state = container_state(pod, container)
    terminated = state.get("terminated")
    waiting = state.get("waiting")
    detail = f"node {(pod.get('spec') or {}).get('nodeName') or '-'}"
    exit_code = None
    if terminated:
        exit_code = int(terminated.get("exitCode", 0))
        detail += f", exit code {exit_code}" + (f" ({terminated['reason']})" if terminated.get("reason") else "")
    elif waiting:
        detail += f", waiting: {waiting.get('reason') or ''}"
    rank = (meta.get("annotations") or {}).get(COMPLETION_INDEX, "0")
    return Child(
        kind="Pod",
        name=meta["name"],
        status=phase,
        detail=detail,
        exit_code=exit_code,
        rank=int(rank) if str(rank).isdigit() else None,
        age_seconds=seconds_since(meta.get("creationTimestamp"), now),
    )


def event_of(raw: dict[str, Any], now: datetime) -> Event:
    involved = raw.get("involvedObject") or {}
    when = raw.get("lastTimestamp") or raw.get("eventTime") or (raw.get("metadata") or {}).get("creationTimestamp")
    return Event(
        type=raw.get("type") or "Normal",
        reason=raw.get("reason") or "",
        object=f"{str(involved.get('kind') or '').lower()}/{involved.get('name') or ''}",
        message=(raw.get("message") or "").strip(),
        count=int(raw.get("count") or 1),
        age_seconds=seconds_since(when, now),
    )


def describe_cluster(cluster: Cluster, item: Listed, now: datetime) -> tuple[list[Child], list[Event]]:
    """The resource's Jobs and pods (by the labels every child carries) and the events about all of them."""
    selector = pod_selector(item.kind, item.name)
    jobs = cluster.list_jobs(item.namespace, selector)
    pods = by_age(cluster.list_pods(item.namespace, selector))
    stage = STAGE_BY_KIND[item.kind]
    children = [job_child(j, now) for j in jobs] + [pod_child(p, stage, now) for p in pods]
    names = [item.name] + [c.name for c in children]
    raw_events = [e for name in names for e in cluster.list_events(item.namespace, name)]
    events = sorted((event_of(e, now) for e in raw_events), key=lambda e: -(e.age_seconds or 0))
    return children, events


def describe_text(description: Description) -> str:
    """kubectl describe's layout: fields, then sections with small tables."""
    lines = [
        f"Name:        {description.name}",
        f"Namespace:   {description.namespace}",
        f"Kind:        {description.kind}",
        f"Phase:       {description.phase}",
        "Spec:",
        *(f"  {key}: {value}" for key, value in description.spec.items()),
        "Conditions:",
    ]

    def section(rows: list[dict[str, Any]]) -> list[str]:
        return ["  " + line for line in table_of(rows).plain.splitlines()] if rows else ["  <none>"]

    lines += section(
        [
            {
                "type": c.get("type"),
                "status": c.get("status"),
                "reason": c.get("reason"),
                "since": c.get("since", ""),
                "message": c.get("message") or "",
            }
            for c in description.conditions
        ]
    )
    lines.append("Children:")
    lines += section(
        [
            {
                "kind": c.kind,
                "name": c.name,
                "status": c.status,
                "rank": "" if c.rank is None else c.rank,
                "age": human_duration(c.age_seconds),
                "detail": c.detail,
            }
            for c in description.children
        ]
    )
    lines.append("Outputs:")
    lines += [f"  {k}: {v}" for k, v in description.outputs.items()] or ["  <none>"]
    lines.append("Events:")
    lines += section(
        [
            {
                "type": e.type,
                "reason": e.reason,
                "age": human_duration(e.age_seconds),
                "object": e.object,
                "message": e.message,
            }
            for e in description.events
        ]
    )
    return "\n".join(lines)


def describe(
    what: Annotated[str, typer.Argument(help="KIND/NAME, e.g. evalrun/qwq-aime24.", autocompletion=complete_ref)],
    local: LocalOpt = False,
    root: RootOpt = None,
    namespace: NamespaceOpt = None,
    output: OutputOpt = OutputFormat.table,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    request_timeout: RequestTimeoutOpt = 30.0,
) -> None:
    """Show one resource in detail: spec summary, conditions, Jobs and pods with exit codes, events, outputs."""
    with reported():
        ref = parse_ref(what, need_name=True)
        assert ref.name is not None
        inventory = open_inventory(
            local=local, root=root, target=Target(kubeconfig, context, namespace, False, request_timeout)
        )
        item = inventory.get(ref.kind, ref.name)
        now = datetime.now(UTC)
        children: list[Child] = []
        events: list[Event] = []
        if isinstance(inventory, ClusterInventory):
            children, events = describe_cluster(inventory.cluster, item, now)
        resource = item.resource
        conditions = []
        for c in (item.body.get("status") or {}).get("conditions") or []:
            since = human_duration(seconds_since(c.get("lastTransitionTime"), now))
            conditions.append({**c, "since": since})
        description = Description(
            kind=item.kind,
            name=item.name,
            namespace=item.namespace,
            phase=str((item.body.get("status") or {}).get("phase") or "Pending"),
            spec=spec_summary(resource) if resource else {"unreadable": item.problem or ""},
            conditions=conditions,
            children=children,
            events=events,
            outputs=outputs_of(resource) if resource else {},
        )
        if output is OutputFormat.table:
            stdout.out(describe_text(description), highlight=False)
        else:
            render(description.to_wire(), [], output)
