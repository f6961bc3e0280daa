"""The reconcile loop: informers fill a cache and a queue; workers turn one resource at a time into children and status.

The informers (`informers`) list and watch the three kinds, and the Jobs, pods, ConfigMaps and Services that
carry the operator's label (and Kueue's Workloads once Kueue is found), each in its own thread. The cache keeps
their newest slimmed bodies; each change queues the resource it concerns (a child's owner, a dependency's
dependants). A resync loop queues every resource again at a fixed interval (level-based), except those waiting
out the backoff of a failed reconcile. kopf timers would do the resync per resource, but kopf puts a finalizer on
every resource with a timer, and cotlab's resources carry none: deleting one must not wait for the operator.

A reconcile (`reconcile`, in a worker thread) reads the cache and decides with the pure builders and reducers:

- a finished resource (Ready or Failed) is left as it is: its outputs and scores were recorded once, and nothing
  that later happens to its Job or pods (PodGC, a TTL, `kubectl delete`) changes them or makes a new child;
- a child counts only when its controller owner reference carries the resource's uid: one left by a deleted
  resource of the same name makes the new one wait (ChildNameTaken) until the garbage collector removes it;
- the policy (`policy`) is checked when a child is about to be made, never against what already runs;
- otherwise it creates what is absent (a deleted spec ConfigMap or Service is made again while the Job runs)
  and patches status only when it changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from cotlab.api import Phase, Reason, Resource
from cotlab.api.children import QUEUE_NAME_LABEL, child_name
from cotlab.api.dependencies import Blocked, resolve_inputs
from cotlab.api.phases import is_finished
from cotlab.api.podcontract import STAGE_BY_KIND
from cotlab.api.validation import format_loc, parse_resource

from .builders import build_children, job_name, nodes_of, suspended
from .cache import Cache, Key, controller_ref, controller_uid
from .informers import WATCHED, Informer, watched_workloads
from .kubeapi import KUEUE_WORKLOAD_CRD, ChildRejected, KubeApi, default_api
from .metrics import OperatorMetrics
from .policy import refusal
from .progress import ProgressReader
from .reducers import Observed, reduce_invalid, reduce_status
from .settings import OperatorSettings
from .status_writer import StatusWriter
from .workqueue import WorkQueue

logger = logging.getLogger(__name__)

_KUEUE_CHECK_SECONDS = 30.0  # how long "Kueue is (not) installed" is believed before asking again
_SYNC_POLL_SECONDS = 0.1


class Requeue(Exception):
    """Status says why the reconcile could not finish (e.g. ChildRejected); try again after the key's backoff."""


def _name_taken(resource: Resource, child: dict[str, Any]) -> Blocked:
    owner = controller_ref(child)
    held = f"{owner.get('kind')} with uid {owner.get('uid')}" if owner else "no controller"
    return Blocked(
        Reason.CHILD_NAME_TAKEN,
        f"{child.get('kind', 'child')} {child['metadata']['name']} exists but belongs to {held}, not to this "
        f"{resource.kind} (uid {resource.metadata.uid}): most likely a deleted {resource.kind} of the same name "
        "whose children the garbage collector has not removed yet; waiting for it to go",
    )


def _job_finished(job: dict[str, Any]) -> bool:
    return any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
        for c in (job.get("status") or {}).get("conditions") or []
    )


class Controller:
    """Owns the cache, the informers, the queue, the workers and the resync loop of one operator process."""

    def __init__(
        self,
        settings: OperatorSettings,
        *,
        namespaces: Sequence[str] = (),
        api_factory: Callable[[OperatorMetrics, OperatorSettings], KubeApi] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC).replace(microsecond=0),
    ) -> None:
        self.settings = settings
        self.namespaces: tuple[str | None, ...] = tuple(namespaces) or (None,)
        self.metrics = OperatorMetrics()
        self._api_factory = api_factory or default_api
        self.api: KubeApi | None = None
        self.clock = clock
        self.cache = Cache()
        self.queue: WorkQueue[Key] = WorkQueue()
        self.status: StatusWriter | None = None
        self.progress: ProgressReader | None = None
        self._failures: dict[Key, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._informers: list[Informer] = []
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._kueue: tuple[float, str | None] | None = None  # (checked at, API version or None)
        self._kueue_lock = threading.Lock()
        self._workloads_watched: str | None = None

    # -- lifecycle (event loop) ---------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.api is None:
            self.api = self._api_factory(self.metrics, self.settings)
        self.status = StatusWriter(self.api, self.cache, self.metrics, self.clock)
        self.progress = ProgressReader(self.api, self.settings)
        self.metrics.serve(self.settings.metrics_port)
        for watched in WATCHED:
            self._start_informers(watched)
        self._tasks = [asyncio.create_task(self._worker(i)) for i in range(self.settings.workers)]
        self._tasks.append(asyncio.create_task(self._resync()))

    async def stop(self) -> None:
        self._stopping.set()
        for informer in self._informers:
            informer.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def _start_informers(self, watched: Any) -> None:
        assert self.api is not None
        for namespace in self.namespaces:
            informer = Informer(self.api, watched, namespace, self, self._stopping)
            self._informers.append(informer)
            informer.start()

    def synced(self) -> bool:
        """Whether every informer has delivered its first list (reconciling earlier would re-create what exists)."""
        return all(i.synced.is_set() for i in self._informers)

    # -- the informers' sink (their threads) -------------------------------------------------------

    def deliver(self, kind: str, event_type: str, body: dict[str, Any]) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self.observe, kind, event_type, body)

    def replace(self, kind: str, namespace: str | None, bodies: list[dict[str, Any]]) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._replace, kind, namespace, bodies)

    # -- the cache (event loop) -------------------------------------------------------------

    def observe(self, kind: str, event_type: str | None, body: dict[str, Any]) -> None:
        """One object changed (or was deleted): update the cache and queue whom it concerns."""
        if kind in STAGE_BY_KIND and event_type == "DELETED":
            key = (kind, body["metadata"]["namespace"], body["metadata"]["name"])
            if self.progress is not None:
                self.progress.forget(key)
            self._failures.pop(key, None)
            self.queue.forget(key)
        for key in self.cache.observe(kind, event_type, body):
            self.queue.add(key)

    def _replace(self, kind: str, namespace: str | None, bodies: list[dict[str, Any]]) -> None:
        """A (re-)list of `kind` in `namespace` (None: all): what it no longer returns was deleted meanwhile."""
        for key in self.cache.replace(kind, namespace, bodies):
            self.queue.add(key)

    # -- workers and resync (event loop) -----------------------------------------------------------

    async def _worker(self, index: int) -> None:
        while not self.synced():
            await asyncio.sleep(_SYNC_POLL_SECONDS)
        while True:
            key = await self.queue.get()
            try:
                await asyncio.to_thread(self.reconcile, key)
                self._failures.pop(key, None)
                self.queue.forget(key)
            except Requeue as why:  # status says why; no traceback
                logger.info("%s: %s; retrying in %.0f s", "/".join(key), why, self._back_off(key))
            except Exception:  # a failed reconcile is retried with backoff; the operator carries on
                self.metrics.errors.labels(key[0]).inc()
                delay = self._back_off(key)
                logger.exception("%s: reconcile failed, retrying in %.0f s", "/".join(key), delay)
            finally:
                self.queue.done(key)

    def _back_off(self, key: Key) -> float:
        """Count a failure of `key` and hold it for its exponential backoff (with jitter); returns the delay."""
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        delay: float = self.settings.retry_seconds * 2.0 ** (failures - 1) * random.uniform(0.8, 1.2)  # noqa: S311
        delay = min(delay, self.settings.retry_max_seconds)  # jittered: keys that failed together retry apart
        self.queue.retry_later(key, delay)
        return delay

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.settings.resync_seconds)
            with self.cache.lock:
                keys = list(self.cache.resources)
                phases = [
                    (k[0], (b.get("status") or {}).get("phase") or Phase.PENDING)
                    for k, b in self.cache.resources.items()
                ]
            self.queue.resync(keys)
            self.metrics.count_phases(phases)
            try:
                await asyncio.to_thread(self.kueue_version)
            except Exception as err:  # noqa: BLE001 - asked again next resync
                logger.warning("Kueue discovery failed: %s", err)

    # -- Kueue (worker threads) --------------------------------------------------------------------------

    def kueue_version(self) -> str | None:
        """Kueue's API version (discovered, at most every 30 s), or None; the first time it is found, Workloads
        are watched."""
        assert self.api is not None
        with self._kueue_lock:
            now = time.monotonic()
            if self._kueue is None or now - self._kueue[0] > _KUEUE_CHECK_SECONDS:
                known = self._kueue[1] if self._kueue else None
                self._kueue = (now, known)  # a failed check is not repeated sooner than a successful one
                self._kueue = (now, self.api.kueue_version())
            version = self._kueue[1]
            if version is not None and self._workloads_watched != version:
                self._workloads_watched = version
                self._start_informers(watched_workloads(version, self.settings.workload_selector))
            return version

    # -- one reconcile (worker thread) -------------------------------------------------------

    def reconcile(self, key: Key) -> None:
        """Make `key`'s children exist and its status say what they show, unless it has finished."""
        kind, namespace, name = key
        assert self.api is not None and self.status is not None, "start() first"
        self.metrics.reconciles.labels(kind).inc()
        with self.cache.lock:
            body = self.cache.resources.get(key)
            needed = None if body is None else _needed(kind, body)
            upstream = None if needed is None else self.cache.resources.get((needed[0], namespace, needed[1]))
        if body is None:
            return
        status = body.get("status") or {}
        if is_finished((c.get("type"), c.get("status")) for c in status.get("conditions") or []):
            self.status.keep_finished(body)
            return
        now = self.clock()
        try:
            resource = parse_resource(body)
        except ValidationError as err:
            errors = "; ".join(f"{format_loc(e['loc'])}: {e['msg']}" for e in err.errors())
            self.status.write(body, reduce_invalid(status, body["metadata"].get("generation"), errors, now=now))
            return
        observed = self._observe(resource, upstream)
        self.status.write(body, reduce_status(resource, observed, now=now).to_wire())
        if observed.retry:
            raise Requeue(observed.blocked.message if observed.blocked else "retry")

    def _children(self, resource: Resource) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The current attempt's Job and every other child by name, as cached (whoever owns them)."""
        namespace = resource.metadata.namespace or "default"
        name = child_name(resource.kind, resource.metadata.name)
        with self.cache.lock:
            job = self.cache.jobs.get((namespace, job_name(resource)))
            others = [self.cache.objects.get(("ConfigMap", namespace, name))]
            if nodes_of(resource) > 1:
                others.append(self.cache.objects.get(("Service", namespace, name)))
        return job, [o for o in others if o is not None]

    def _observe(self, resource: Resource, upstream: dict[str, Any] | None) -> Observed:
        """Create what is missing and read what reducing needs: the Job, its pods, the newest marker."""
        assert self.api is not None and self.progress is not None
        uid = resource.metadata.uid
        job, others = self._children(resource)
        taken = next((c for c in [job, *others] if c is not None and controller_uid(c) != uid), None)
        if taken is not None:
            return Observed(blocked=_name_taken(resource, taken))
        namespace = resource.metadata.namespace or "default"
        expected = 2 if nodes_of(resource) > 1 else 1  # the spec ConfigMap, and the Service of a multi-node run
        if job is None or (not _job_finished(job) and len(others) < expected):
            made = self._make_children(resource, upstream, job, others)
            if isinstance(made, Observed):
                return made
            job = made
        elif not _queued(job) and bool((job.get("spec") or {}).get("suspend")) != suspended(resource):
            # Only a Job the operator suspends itself; a queued Job's suspend belongs to Kueue.
            job = self.api.set_job_suspend(namespace, job["metadata"]["name"], suspended(resource))
        with self.cache.lock:
            pods = list(self.cache.pods.get((namespace, job["metadata"]["name"]), {}).values())
            workload = self.cache.workloads.get(job["metadata"].get("uid", "")) if _queued(job) else None
        pods = [p for p in pods if controller_uid(p) == job["metadata"].get("uid")]  # an old Job's pods linger
        if workload is not None:
            active = (workload.get("spec") or {}).get("active", True)
            version = self.kueue_version()
            if active == suspended(resource) and version is not None:
                # spec.suspend on a queued run goes through Kueue: a deactivated Workload is evicted and its Job
                # suspended by Kueue itself, so the two never fight over the Job's suspend field.
                meta = workload["metadata"]
                self.api.set_workload_active(version, meta["namespace"], meta["name"], not suspended(resource))
        current = all(i.healthy for i in self._informers if i.watched.kind == "Pod")
        return Observed(
            job=job, pods=pods, marker=self.progress.newest(resource, pods), workload=workload, pods_current=current
        )

    def _make_children(
        self,
        resource: Resource,
        upstream: dict[str, Any] | None,
        job: dict[str, Any] | None,
        others: list[dict[str, Any]],
    ) -> dict[str, Any] | Observed:
        """Create the missing children (all of them for a new attempt; a deleted ConfigMap or Service while the
        Job runs); returns the Job, or what to report instead (refused, blocked, name taken, rejected)."""
        assert self.api is not None
        if job is None:
            refused = refusal(resource, self.settings)  # checked when a child is made, never after
            if refused is not None:
                return Observed(refusal=refused)
        inputs = resolve_inputs(resource, _parsed(upstream))
        if isinstance(inputs, Blocked):
            if job is not None:  # a running Job whose dependency went away: its ConfigMap cannot be rebuilt
                logger.warning("%s: cannot re-create its spec ConfigMap: %s", _ref(resource), inputs.message)
                return job
            return Observed(blocked=inputs)
        queue = resource.spec.queue_name
        if job is None and queue is not None and self.kueue_version() is None:
            # A queued Job would sit suspended forever: nothing but Kueue ever unsuspends it.
            message = (
                f"spec.queueName is {queue!r}, but Kueue is not installed (no {KUEUE_WORKLOAD_CRD} CRD); "
                "install Kueue, or remove queueName"
            )
            return Observed(blocked=Blocked(Reason.KUEUE_NOT_INSTALLED, message))
        children = build_children(resource, inputs, self.settings)
        present = {(o.get("kind"), o["metadata"]["name"]) for o in others}
        wanted = [c for c in (children.config_map, children.service) if c is not None]
        missing = [c for c in wanted if (c["kind"], c["metadata"]["name"]) not in present]
        try:
            for child in [*missing, *([children.job] if job is None else [])]:
                stored = self.api.create(child)
                if controller_uid(stored) != resource.metadata.uid:
                    return Observed(blocked=_name_taken(resource, {**stored, "kind": child["kind"]}))
                self.cache.remember(child["kind"], _slimmed(child["kind"], stored))
                logger.info("%s: created %s %s", _ref(resource), child["kind"], child["metadata"]["name"])
                if child["kind"] == "Job":
                    job = stored
        except ChildRejected as err:
            if job is not None:  # the Job runs on; its ConfigMap or Service is tried again next reconcile
                logger.warning("%s: %s", _ref(resource), err)
                return job
            return Observed(blocked=Blocked(Reason.CHILD_REJECTED, str(err)), retry=True)
        assert job is not None
        return job


def _slimmed(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    watched = next(w for w in WATCHED if w.kind == kind)
    return watched.slim({**body, "kind": kind})


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


def _ref(resource: Resource) -> str:
    return f"{resource.kind}/{resource.metadata.namespace}/{resource.metadata.name}"
