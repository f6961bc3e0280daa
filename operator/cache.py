"""What the informers delivered, indexed the way reconciles read it, and whom each change concerns.

Written on the event loop (the informers hand over through it), read by the workers' threads under `lock`. Each
`observe` returns the resources to reconcile because of the change: a child's owner (by its controller owner
reference), a dependency's dependants. No API, no queue: the controller queues what comes back.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from cotlab.api.children import JOB_NAME_LABEL, WORKLOAD_JOB_UID_LABEL
from cotlab.api.podcontract import STAGE_BY_KIND

Key = tuple[str, str, str]  # (kind, namespace, name)
_DEPENDANT = {"TraceDataset": "FineTuneRun", "FineTuneRun": "EvalRun"}


def controller_ref(body: dict[str, Any]) -> dict[str, Any] | None:
    """The object's controller owner reference: whose it is."""
    for ref in body["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def controller_uid(body: dict[str, Any]) -> str | None:
    """The uid in the object's controller owner reference."""
    ref = controller_ref(body)
    return str(ref.get("uid")) if ref is not None else None


@dataclass
class Cache:
    """The newest slimmed body of each object the informers see."""

    resources: dict[Key, dict[str, Any]] = field(default_factory=dict)
    jobs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    pods: dict[tuple[str, str], dict[str, dict[str, Any]]] = field(default_factory=dict)  # by (namespace, job)
    objects: dict[Key, dict[str, Any]] = field(default_factory=dict)  # ConfigMaps and Services
    workloads: dict[str, dict[str, Any]] = field(default_factory=dict)  # by the Job uid Kueue labels them with
    lock: threading.Lock = field(default_factory=threading.Lock)

    def observe(self, kind: str, event_type: str | None, body: dict[str, Any]) -> list[Key]:
        """One object changed (or was deleted, `DELETED`): keep it, and return whom it concerns."""
        meta = body["metadata"]
        namespace, name, gone = meta["namespace"], meta["name"], event_type == "DELETED"
        with self.lock:
            if kind in STAGE_BY_KIND:
                self._put(self.resources, (kind, namespace, name), body, gone)
                return ([] if gone else [(kind, namespace, name)]) + self._dependants(kind, namespace, name)
            if kind == "Job":
                self._put(self.jobs, (namespace, name), body, gone)
                return self._owner(body)
            if kind == "Pod":
                job = (meta.get("labels") or {}).get(JOB_NAME_LABEL)
                if job is None:
                    return []
                pods = self.pods.setdefault((namespace, job), {})
                self._put(pods, name, body, gone)
                if not pods:
                    del self.pods[(namespace, job)]
                owner = self.jobs.get((namespace, job))
                return self._owner(owner) if owner is not None else []
            if kind == "Workload":
                job_uid = (meta.get("labels") or {}).get(WORKLOAD_JOB_UID_LABEL)
                if not job_uid:
                    return []
                self._put(self.workloads, job_uid, body, gone)
                return [k for j in self.jobs.values() if j["metadata"].get("uid") == job_uid for k in self._owner(j)]
            # A spec ConfigMap or rendezvous Service: a deleted one is made again while its Job runs.
            self._put(self.objects, (kind, namespace, name), body, gone)
            return self._owner(body) if gone else []

    def replace(self, kind: str, namespace: str | None, bodies: list[dict[str, Any]]) -> list[Key]:
        """A (re-)list of `kind` in `namespace` (None: all): what it no longer returns was deleted meanwhile."""
        listed = {(b["metadata"].get("namespace", ""), b["metadata"]["name"]) for b in bodies}
        concerned: list[Key] = []
        for old in self.cached(kind, namespace):
            if (old["metadata"].get("namespace", ""), old["metadata"]["name"]) not in listed:
                concerned += self.observe(kind, "DELETED", old)
        for body in bodies:
            concerned += self.observe(kind, None, body)
        return concerned

    def remember(self, kind: str, body: dict[str, Any]) -> None:
        """A child a worker just made, before its watch event (which may come after the next reconcile)."""
        meta = body["metadata"]
        with self.lock:
            if kind == "Job":
                self.jobs[(meta["namespace"], meta["name"])] = body
            else:
                self.objects[(kind, meta["namespace"], meta["name"])] = body

    def cached(self, kind: str, namespace: str | None) -> list[dict[str, Any]]:
        """Every kept object of `kind` in `namespace` (None: all)."""
        with self.lock:
            if kind in STAGE_BY_KIND:
                found = [b for k, b in self.resources.items() if k[0] == kind]
            elif kind == "Job":
                found = list(self.jobs.values())
            elif kind == "Pod":
                found = [p for pods in self.pods.values() for p in pods.values()]
            elif kind == "Workload":
                found = list(self.workloads.values())
            else:
                found = [b for k, b in self.objects.items() if k[0] == kind]
        return [b for b in found if namespace is None or b["metadata"].get("namespace") == namespace]

    @staticmethod
    def _put(store: dict[Any, dict[str, Any]], key: Any, body: dict[str, Any], gone: bool) -> None:
        if gone:
            store.pop(key, None)
        else:
            store[key] = body

    @staticmethod
    def _owner(child: dict[str, Any]) -> list[Key]:
        ref = controller_ref(child)
        if ref is None or ref.get("kind") not in STAGE_BY_KIND:
            return []
        return [(str(ref["kind"]), child["metadata"]["namespace"], str(ref["name"]))]

    def _dependants(self, kind: str, namespace: str, name: str) -> list[Key]:
        """The FineTuneRuns of a TraceDataset, the EvalRuns of a FineTuneRun (caller holds the lock)."""
        wanted = _DEPENDANT.get(kind)
        found: list[Key] = []
        for key, body in self.resources.items():
            if wanted is None or key[0] != wanted or key[1] != namespace:
                continue
            spec = body.get("spec") or {}
            ref = spec.get("datasetRef") if wanted == "FineTuneRun" else (spec.get("model") or {}).get("fineTuneRunRef")
            if (ref or {}).get("name") == name:
                found.append(key)
        return found
