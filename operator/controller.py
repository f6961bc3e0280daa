"""The reconcile loop: watches fill a cache and a queue; workers turn one resource at a time into children and status.

kopf's watches (see `handlers`) call `observe_*` with every event of the three kinds and of the Jobs and pods
the operator made. The cache keeps their newest bodies; each event queues the resource it concerns (a child's
owner, a dependency's dependants). A resync loop queues every resource again at a fixed interval, so status is
re-derived from the children even when no event came (level-based). kopf timers would do that per resource,
but kopf puts a finalizer on every resource with a timer (`kopf.on.timer`: requires_finalizer=True), and
cotlab's resources carry none: deleting one must not wait for the operator.

A reconcile (`reconcile`, in a worker thread) reads the cache, decides with the pure builders and reducers,
creates what is absent, and patches status only when it changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from cotlab.api import Condition, Phase, Reason, Resource
from cotlab.api.children import JOB_NAME_LABEL, QUEUE_NAME_LABEL
from cotlab.api.conditions import phase_condition
from cotlab.api.dependencies import Blocked, resolve_inputs
from cotlab.api.podcontract import STAGE_BY_KIND, parse_marker
from cotlab.api.validation import format_loc, parse_resource

from .builders import build_children, job_name, suspended
from .kubeapi import KUEUE_WORKLOAD_CRD, KubeApi
from .metrics import OperatorMetrics
from .policy import refusal
from .reducers import Observed, reduce_invalid, reduce_status
from .settings import OperatorSettings
from .workqueue import WorkQueue

logger = logging.getLogger(__name__)

Key = tuple[str, str, str]  # (kind, namespace, name)
_MAX_RETRY_SECONDS = 60.0
_KUEUE_CHECK_SECONDS = 30.0  # how long "Kueue is (not) installed" is believed before asking again


@dataclass
class _Progress:
    """Per resource: when its pod's log was last read, and the newest marker found."""

    read_at: float = 0.0
    pod: str | None = None
    marker: dict[str, Any] | None = None


@dataclass
class Cache:
    """The newest bodies the watches delivered; written on the event loop, read by workers under the lock."""

    resources: dict[Key, dict[str, Any]] = field(default_factory=dict)
    jobs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    pods: dict[tuple[str, str], dict[str, dict[str, Any]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _owner(body: dict[str, Any], kind: str) -> str | None:
    for ref in body["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == kind and ref.get("controller"):
            return str(ref["name"])
    return None


def _rank0(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest running pod of completion index 0 (or of no index): the one whose log carries progress."""
    running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
    first = [
        p
        for p in running
        if (p["metadata"].get("annotations") or {}).get("batch.kubernetes.io/job-completion-index", "0") == "0"
    ]
    return max(first, key=lambda p: p["metadata"].get("creationTimestamp") or "", default=None)


class Controller:
    """Owns the cache, the queue, the workers and the resync loop of one operator process."""

    def __init__(
        self,
        settings: OperatorSettings,
        *,
        api_factory: Callable[[OperatorMetrics], KubeApi] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC).replace(microsecond=0),
    ) -> None:
        self.settings = settings
        self.metrics = OperatorMetrics()
        self._api_factory = api_factory
        self.api: KubeApi | None = None
        self.clock = clock
        self.cache = Cache()
        self.queue: WorkQueue[Key] = WorkQueue()
        self._progress: dict[Key, _Progress] = {}
        self._failures: dict[Key, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._kueue: tuple[float, bool] | None = None  # (checked at, installed)

    # -- lifecycle (event loop) ---------------------------------------------------------

    async def start(self) -> None:
        if self.api is None:
            self.api = self._api_factory(self.metrics) if self._api_factory else _default_api(self.metrics)
        self.metrics.serve(self.settings.metrics_port)
        self._tasks = [asyncio.create_task(self._worker(i)) for i in range(self.settings.workers)]
        self._tasks.append(asyncio.create_task(self._resync()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    # -- watches (event loop) -------------------------------------------------------------

    def observe_resource(self, kind: str, event_type: str | None, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        key = (kind, meta["namespace"], meta["name"])
        with self.cache.lock:
            if event_type == "DELETED":
                self.cache.resources.pop(key, None)
            else:
                self.cache.resources[key] = body
        if event_type == "DELETED":
            self._progress.pop(key, None)
            self._failures.pop(key, None)
        else:
            self.queue.add(key)
        for dependant in self._dependants(kind, meta["namespace"], meta["name"]):
            self.queue.add(dependant)

    def observe_job(self, event_type: str | None, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        with self.cache.lock:
            if event_type == "DELETED":
                self.cache.jobs.pop((meta["namespace"], meta["name"]), None)
            else:
                self.cache.jobs[(meta["namespace"], meta["name"])] = body
        self._queue_owner(body)

    def observe_pod(self, event_type: str | None, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        job = (meta.get("labels") or {}).get(JOB_NAME_LABEL) or _owner(body, "Job")
        if job is None:
            return
        with self.cache.lock:
            pods = self.cache.pods.setdefault((meta["namespace"], job), {})
            if event_type == "DELETED":
                pods.pop(meta["name"], None)
            else:
                pods[meta["name"]] = body
            owner = self.cache.jobs.get((meta["namespace"], job))
        if owner is not None:
            self._queue_owner(owner)

    def _queue_owner(self, job: dict[str, Any]) -> None:
        for ref in job["metadata"].get("ownerReferences") or []:
            if ref.get("controller") and ref.get("kind") in STAGE_BY_KIND:
                self.queue.add((ref["kind"], job["metadata"]["namespace"], ref["name"]))

    def _dependants(self, kind: str, namespace: str, name: str) -> list[Key]:
        wanted = {"TraceDataset": "FineTuneRun", "FineTuneRun": "EvalRun"}.get(kind)
        if wanted is None:
            return []
        with self.cache.lock:
            candidates = [(k, b) for k, b in self.cache.resources.items() if k[0] == wanted and k[1] == namespace]
        found = []
        for key, body in candidates:
            spec = body.get("spec") or {}
            ref = spec.get("datasetRef") if wanted == "FineTuneRun" else (spec.get("model") or {}).get("fineTuneRunRef")
            if (ref or {}).get("name") == name:
                found.append(key)
        return found

    # -- workers (event loop) -------------------------------------------------------------

    async def _worker(self, index: int) -> None:
        while True:
            key = await self.queue.get()
            try:
                await asyncio.to_thread(self.reconcile, key)
                self._failures.pop(key, None)
            except Exception:  # a failed reconcile is retried with backoff; the operator carries on
                failures = self._failures.get(key, 0) + 1
                self._failures[key] = failures
                self.metrics.errors.labels(key[0]).inc()
                delay = min(self.settings.retry_seconds * 2 ** (failures - 1), _MAX_RETRY_SECONDS)
                logger.exception("%s: reconcile failed, retrying in %.0f s", "/".join(key), delay)
                self.queue.add_after(key, delay)
            finally:
                self.queue.done(key)

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.settings.resync_seconds)
            with self.cache.lock:
                keys = list(self.cache.resources)
                phases = [
                    (k[0], (b.get("status") or {}).get("phase") or Phase.PENDING)
                    for k, b in self.cache.resources.items()
                ]
            for key in keys:
                self.queue.add(key)
            self.metrics.count_phases(phases)

    # -- one reconcile (worker thread) -------------------------------------------------------

    def reconcile(self, key: Key) -> None:
        """Make `key`'s children exist and its status say what they show."""
        kind, namespace, name = key
        assert self.api is not None, "start() first"
        self.metrics.reconciles.labels(kind).inc()
        with self.cache.lock:
            body = self.cache.resources.get(key)
            needed = None if body is None else _needed(kind, body)
            upstream = None if needed is None else self.cache.resources.get((needed[0], namespace, needed[1]))
        if body is None:
            return
        now = self.clock()
        try:
            resource = parse_resource(body)
        except ValidationError as err:
            errors = "; ".join(f"{format_loc(e['loc'])}: {e['msg']}" for e in err.errors())
            status = reduce_invalid(kind, body.get("status"), body["metadata"].get("generation"), errors, now=now)
            self._write_status(body, status.to_wire())
            return
        current = job_name(resource)  # the current attempt's Job: status.restarts says which
        with self.cache.lock:
            job = self.cache.jobs.get((namespace, current))
            pods = list(self.cache.pods.get((namespace, current), {}).values())
        observed = self._observe(resource, job, pods, upstream)
        self._write_status(body, reduce_status(resource, observed, now=now).to_wire())

    def _observe(
        self,
        resource: Resource,
        job: dict[str, Any] | None,
        pods: list[dict[str, Any]],
        upstream: dict[str, Any] | None,
    ) -> Observed:
        """Create what is missing and read what reducing needs: the Job, its pods, the newest marker."""
        assert self.api is not None
        refused = refusal(resource, self.settings)
        if refused is not None:
            return Observed(job=job, pods=pods, refusal=refused)
        queue = resource.spec.queue_name
        if job is None:
            inputs = resolve_inputs(resource, _parsed(upstream))
            if isinstance(inputs, Blocked):
                return Observed(blocked=inputs)
            if queue is not None and not self._kueue_installed():
                # A queued Job would sit suspended forever: nothing but Kueue ever unsuspends it.
                message = (
                    f"spec.queueName is {queue!r}, but Kueue is not installed (no {KUEUE_WORKLOAD_CRD} CRD); "
                    "install Kueue, or remove queueName"
                )
                return Observed(blocked=Blocked(Reason.KUEUE_NOT_INSTALLED, message))
            children = build_children(resource, inputs, self.settings)
            self.api.create(children.config_map)
            if children.service is not None:
                self.api.create(children.service)
            job = self.api.create(children.job)
            logger.info("%s: created Job %s", _ref(resource), job["metadata"]["name"])
        elif not _queued(job) and bool((job.get("spec") or {}).get("suspend")) != suspended(resource):
            # Only a Job the operator suspends itself; a queued Job's suspend belongs to Kueue.
            job = self.api.set_job_suspend(job["metadata"]["namespace"], job["metadata"]["name"], suspended(resource))
        workload = None
        if _queued(job):
            workload = self.api.workload_of(job["metadata"]["namespace"], job["metadata"]["uid"])
            active = (workload or {}).get("spec", {}).get("active", True)
            if workload is not None and active == suspended(resource):
                # spec.suspend on a queued run goes through Kueue: a deactivated Workload is evicted and its Job
                # suspended by Kueue itself, so the two never fight over the Job's suspend field.
                meta = workload["metadata"]
                self.api.set_workload_active(meta["namespace"], meta["name"], not suspended(resource))
        return Observed(job=job, pods=pods, marker=self._marker(resource, pods), workload=workload)

    def _kueue_installed(self) -> bool:
        assert self.api is not None
        now = time.monotonic()
        if self._kueue is None or now - self._kueue[0] > _KUEUE_CHECK_SECONDS:
            self._kueue = (now, self.api.crd_exists(KUEUE_WORKLOAD_CRD))
        return self._kueue[1]

    def _marker(self, resource: Resource, pods: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The newest progress marker of the rank-0 pod, its log read at most every progress_interval_seconds."""
        assert self.api is not None
        key = (resource.kind, resource.metadata.namespace or "default", resource.metadata.name)
        progress = self._progress.setdefault(key, _Progress())
        pod = _rank0(pods)
        if pod is None:
            return progress.marker
        name = pod["metadata"]["name"]
        if name == progress.pod and time.monotonic() - progress.read_at < self.settings.progress_interval_seconds:
            return progress.marker
        progress.read_at, progress.pod = time.monotonic(), name
        try:
            lines = self.settings.progress_tail_lines
            text = self.api.log_tail(pod["metadata"]["namespace"], name, STAGE_BY_KIND[resource.kind], lines)
        except Exception:  # noqa: BLE001 - a log that cannot be read yet only delays progress
            logger.debug("log not readable", extra={"pod": name})
            return progress.marker
        for line in reversed(text.splitlines()):
            marker = parse_marker(line)
            if marker is not None:
                progress.marker = marker
                break
        return progress.marker

    def _write_status(self, body: dict[str, Any], status: dict[str, Any]) -> None:
        """Patch status if it changed (keys that vanished are removed); post an Event when the phase moved."""
        assert self.api is not None
        old = dict(body.get("status") or {})
        if old == status:
            return
        patch: dict[str, Any] = {**{k: None for k in old if k not in status}, **status}
        meta = body["metadata"]
        self.api.patch_status(body["kind"], meta["namespace"], meta["name"], patch)
        key = (body["kind"], meta["namespace"], meta["name"])
        with self.cache.lock:  # write-through: a reconcile before the watch delivers this must not undo it
            if key in self.cache.resources:
                self.cache.resources[key] = {**self.cache.resources[key], "status": status}
        before, after = old.get("phase") or Phase.PENDING, status.get("phase") or Phase.PENDING
        if before != after:
            self._transition(body, status, after)
        ended = status.get("endedAttempts") or []
        if len(ended) > len(old.get("endedAttempts") or []):  # Running before and after: no phase event says it
            last = ended[-1]
            message = f"attempt {last['attempt']} ended ({last['reason']}): {last.get('message', '')}"
            self.api.post_event(body, "Warning", Reason.RESTARTING, message)

    def _transition(self, body: dict[str, Any], status: dict[str, Any], phase: str) -> None:
        assert self.api is not None
        conditions = [_condition(c) for c in status.get("conditions") or []]
        deciding = phase_condition([c for c in conditions if c is not None])
        reason = deciding.reason if deciding else phase
        message = deciding.message if deciding else ""
        warning = phase == Phase.FAILED
        self.api.post_event(body, "Warning" if warning else "Normal", reason, message or f"phase {phase}")
        created = body["metadata"].get("creationTimestamp")
        if created:
            age = (self.clock() - datetime.fromisoformat(created.replace("Z", "+00:00"))).total_seconds()
            if phase == Phase.RUNNING:
                self.metrics.to_running.labels(body["kind"]).observe(age)
            elif phase == Phase.SUCCEEDED:
                self.metrics.to_ready.labels(body["kind"]).observe(age)
        meta = body["metadata"]
        logger.info("%s/%s/%s: %s (%s) %s", body["kind"], meta["namespace"], meta["name"], phase, reason, message)


def _needed(kind: str, body: dict[str, Any]) -> tuple[str, str] | None:
    spec = body.get("spec") or {}
    if kind == "FineTuneRun":
        name = (spec.get("datasetRef") or {}).get("name")
        return ("TraceDataset", name) if name else None
    if kind == "EvalRun":
        name = ((spec.get("model") or {}).get("fineTuneRunRef") or {}).get("name")
        return ("FineTuneRun", name) if name else None
    return None


def _parsed(body: dict[str, Any] | None) -> Resource | None:
    if body is None:
        return None
    try:
        return parse_resource(body)
    except ValidationError:
        return None


def _queued(job: dict[str, Any]) -> bool:
    return QUEUE_NAME_LABEL in (job["metadata"].get("labels") or {})


def _condition(raw: dict[str, Any]) -> Condition | None:
    try:
        return Condition.model_validate(raw)
    except ValidationError:
        return None


def _ref(resource: Resource) -> str:
    return f"{resource.kind}/{resource.metadata.namespace}/{resource.metadata.name}"


def _default_api(metrics: OperatorMetrics) -> KubeApi:
    """A client from the pod's service account in a cluster, else from KUBECONFIG / ~/.kube/config."""
    import kubernetes.client
    import kubernetes.config

    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return KubeApi(kubernetes.client.ApiClient(configuration), metrics)
