"""List-then-watch loops, one thread each, that keep the controller's cache: as client-go's reflector does it.

Why not kopf's watches: kopf filters Jobs and pods by label after receiving every one of them (or sends a selector
that applies to every handler of a kind), never tells a handler that a re-list happened, so an object deleted
while the watch was down stays in a cache forever, and its request errors (a 500 while listing) end the stream.
Here each `Informer`:

- selects server-side: the operator's Jobs, pods, ConfigMaps and Services carry
  `app.kubernetes.io/managed-by=cotlab-operator`, and only those are listed and watched;
- lists in pages of `list_page_size`, then hands the whole scope to the sink at once (`replace`): whatever the
  re-list no longer returns is dropped from the cache, and its owner reconciled;
- keeps only the fields the reducers read (`slim_*`): no managedFields, no pod specs, no ConfigMap data;
- watches from the list's resourceVersion (bookmarks on), re-lists on 410 Gone, and after an error backs off
  exponentially (with jitter, up to retry_max_seconds), so an API server answering 429 or 500 is not hammered, then
  lists again: `healthy` (the pods in the cache are what the API server has) holds only from a list on.

Requests go through `KubeApi`, so they are throttled and time out like every other.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from cotlab.api.children import LABEL_MANAGED_BY, MANAGED_BY

from .kubeapi import (
    CONFIG_MAPS,
    JOBS,
    PODS,
    RESOURCE_APIS,
    SERVICES,
    ApiKind,
    KubeApi,
    Permission,
    kueue_workloads,
)

logger = logging.getLogger(__name__)

OURS = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
_COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _meta(body: dict[str, Any], *, annotations: tuple[str, ...] = ()) -> dict[str, Any]:
    meta = body.get("metadata") or {}
    kept = {
        k: meta[k]
        for k in ("name", "namespace", "uid", "generation", "resourceVersion", "creationTimestamp",
                  "deletionTimestamp", "labels", "ownerReferences")
        if k in meta
    }  # fmt: skip
    wanted = {k: v for k, v in (meta.get("annotations") or {}).items() if k in annotations}
    if wanted:
        kept["annotations"] = wanted
    return kept


def slim_resource(body: dict[str, Any]) -> dict[str, Any]:
    """A cotlab resource without managedFields and kubectl's copy of the last applied manifest."""
    meta = {k: v for k, v in (body.get("metadata") or {}).items() if k != "managedFields"}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != _LAST_APPLIED}
    meta["annotations"] = annotations
    if not annotations:
        del meta["annotations"]
    return {**body, "metadata": meta}


def slim_job(body: dict[str, Any]) -> dict[str, Any]:
    spec = body.get("spec") or {}
    return {"kind": body.get("kind"), "metadata": _meta(body), "spec": {"suspend": spec.get("suspend")},
            "status": body.get("status") or {}}  # fmt: skip


def slim_pod(body: dict[str, Any]) -> dict[str, Any]:
    status = body.get("status") or {}
    kept = {k: status[k] for k in ("phase", "conditions", "containerStatuses") if k in status}
    return {"kind": body.get("kind"), "metadata": _meta(body, annotations=(_COMPLETION_INDEX,)), "status": kept}


def slim_object(body: dict[str, Any]) -> dict[str, Any]:
    """ConfigMaps and Services: only whether they exist and whose they are."""
    return {"kind": body.get("kind"), "metadata": _meta(body)}


def slim_workload(body: dict[str, Any]) -> dict[str, Any]:
    spec = body.get("spec") or {}
    return {"kind": body.get("kind"), "metadata": _meta(body), "spec": {"active": spec.get("active", True)},
            "status": body.get("status") or {}}  # fmt: skip


@dataclass(frozen=True)
class Watched:
    """One kind the operator lists and watches: where it lives, which of it, what of it is kept."""

    kind: str
    api: ApiKind
    list_permission: Permission
    watch_permission: Permission
    selector: str | None
    slim: Callable[[dict[str, Any]], dict[str, Any]]


WATCHED = (
    Watched("TraceDataset", RESOURCE_APIS["TraceDataset"], Permission.LIST_TRACEDATASETS,
            Permission.WATCH_TRACEDATASETS, None, slim_resource),
    Watched("FineTuneRun", RESOURCE_APIS["FineTuneRun"], Permission.LIST_FINETUNERUNS,
            Permission.WATCH_FINETUNERUNS, None, slim_resource),
    Watched("EvalRun", RESOURCE_APIS["EvalRun"], Permission.LIST_EVALRUNS, Permission.WATCH_EVALRUNS, None,
            slim_resource),
    Watched("Job", JOBS, Permission.LIST_JOBS, Permission.WATCH_JOBS, OURS, slim_job),
    Watched("Pod", PODS, Permission.LIST_PODS, Permission.WATCH_PODS, OURS, slim_pod),
    Watched("ConfigMap", CONFIG_MAPS, Permission.LIST_CONFIG_MAPS, Permission.WATCH_CONFIG_MAPS, OURS, slim_object),
    Watched("Service", SERVICES, Permission.LIST_SERVICES, Permission.WATCH_SERVICES, OURS, slim_object),
)  # fmt: skip


def watched_workloads(version: str, selector: str) -> Watched:
    """Kueue's Workloads (at the discovered version) that carry `selector`."""
    return Watched("Workload", kueue_workloads(version), Permission.LIST_WORKLOADS, Permission.WATCH_WORKLOADS,
                   selector, slim_workload)  # fmt: skip


class Sink(Protocol):
    """Where an informer delivers (from its own thread): one event, or a whole scope after a (re-)list."""

    def deliver(self, kind: str, event_type: str, body: dict[str, Any]) -> None: ...

    def replace(self, kind: str, namespace: str | None, bodies: list[dict[str, Any]]) -> None: ...


class _Relist(Exception):
    """The watch's resourceVersion is gone (410): list again."""


class Informer:
    """List then watch one kind in one scope (a namespace, or all), from its own daemon thread."""

    def __init__(
        self, api: KubeApi, watched: Watched, namespace: str | None, sink: Sink, stopping: threading.Event
    ) -> None:
        self.api, self.watched, self.namespace, self.sink, self.stopping = api, watched, namespace, sink, stopping
        self.synced = threading.Event()  # set once the first list has been delivered
        self.healthy = False  # the cache holds a list and what was watched since; False from a failure until a list
        self._response: Any = None
        where = namespace or "all namespaces"
        self._thread = threading.Thread(target=self._run, name=f"watch {watched.kind} in {where}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        response = self._response
        if response is not None:  # unblocks the thread's read at once
            try:
                response.shutdown()
            except Exception:  # noqa: BLE001 - older urllib3 has no shutdown; the read times out then
                logger.debug("watch response not shut down", extra={"kind": self.watched.kind})

    def _run(self) -> None:
        version: str | None = None
        failures = 0
        while not self.stopping.is_set():
            try:
                if version is None:
                    version = self._list()
                version = self._watch(version)
                failures = 0
            except _Relist:
                self.healthy = False
                version = None
            except Exception as err:  # noqa: BLE001 - any failure: back off, then list again
                self.healthy = False
                # Not resumed from `version`: a resumed watch is answered before the events it missed arrive, so
                # `healthy` would be claimed over a stale cache (a pod shown Running after its Job completed).
                # Only a list is a snapshot; it costs one paged request per informer per outage.
                version = None
                if self.stopping.is_set():
                    return
                failures += 1
                settings = self.api.settings
                delay = settings.watch_retry_seconds * 2 ** (failures - 1) * random.uniform(0.8, 1.2)  # noqa: S311
                delay = min(delay, settings.retry_max_seconds)  # jittered, so that watches do not retry in step
                status = err.status if isinstance(err, ApiException) else type(err).__name__
                logger.warning(
                    "%s watch failed (%s); retrying in %.1f s", self.watched.kind, status, delay,
                    extra={"kind": self.watched.kind, "namespace": self.namespace, "failures": failures},
                )  # fmt: skip
                self.api.metrics.watch_failures.labels(self.watched.kind).inc()
                self.stopping.wait(delay)

    def _list(self) -> str:
        """Every object in scope, page by page, delivered as one replacement; returns the list's version."""
        watched, token = self.watched, None
        bodies: list[dict[str, Any]] = []
        while True:
            try:
                page = self.api.list_page(watched.list_permission, watched.api, self.namespace, watched.selector,
                                          token)  # fmt: skip
            except ApiException as err:
                if err.status == 410 and token:  # the continue token expired mid-list: start over
                    bodies, token = [], None
                    continue
                raise
            bodies.extend(watched.slim(_with_kind(item, watched)) for item in page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue") or None
            if token is None:
                self.sink.replace(watched.kind, self.namespace, bodies)
                self.synced.set()
                self.healthy = True
                return str((page.get("metadata") or {}).get("resourceVersion") or "")

    def _watch(self, version: str) -> str:
        """Deliver watch events until the server ends the watch; returns the newest version seen."""
        watched = self.watched
        self._response = self.api.watch(watched.watch_permission, watched.api, self.namespace, watched.selector,
                                        version)  # fmt: skip
        try:
            for line in iter_resp_lines(self._response):  # type: ignore[no-untyped-call]
                event = json.loads(line)
                body = event.get("object") or {}
                if event.get("type") == "ERROR":
                    if body.get("code") == 410:
                        raise _Relist
                    raise RuntimeError(f"watch error: {body.get('message') or body}")
                version = str((body.get("metadata") or {}).get("resourceVersion") or version)
                if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                    self.sink.deliver(watched.kind, event["type"], watched.slim(_with_kind(body, watched)))
        finally:
            self._response.release_conn()
            self._response = None
        return version


def _with_kind(body: dict[str, Any], watched: Watched) -> dict[str, Any]:
    """List items of built-in kinds come without `kind` and `apiVersion`; the controller reads them."""
    if body.get("kind") and body.get("apiVersion"):
        return body
    api = watched.api
    return {**body, "kind": watched.kind, "apiVersion": f"{api.group}/{api.version}" if api.group else api.version}
