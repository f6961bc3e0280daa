"""The few API calls a reconcile makes, each counted: create-if-absent, suspend, status, log tail, events.

Bodies go in and come out as plain camelCase dicts (the shape kopf's watches deliver), so the builders and
reducers never see the client's model classes.
"""

from __future__ import annotations

import json
import logging
import socket
from datetime import UTC, datetime
from typing import Any

import kubernetes.client
from kubernetes.client.exceptions import ApiException

from cotlab.api import GROUP, VERSION
from cotlab.api.children import MANAGED_BY, WORKLOAD_JOB_UID_LABEL
from cotlab.api.resources import KINDS_BY_NAME

from .metrics import OperatorMetrics

logger = logging.getLogger(__name__)

MAX_EVENT_MESSAGE = 1024
# Kueue's API (only v1beta2 is served without its conversion webhook); the CRD whose presence means "installed".
KUEUE_GROUP, KUEUE_VERSION = "kueue.x-k8s.io", "v1beta2"
KUEUE_WORKLOAD_CRD = "workloads.kueue.x-k8s.io"


def _json(response: Any) -> dict[str, Any]:
    return json.loads(response.data)  # type: ignore[no-any-return]


class KubeApi:
    """A kubernetes client wrapped to speak dicts (which it accepts for bodies) and count its requests."""

    def __init__(self, client: kubernetes.client.ApiClient, metrics: OperatorMetrics) -> None:
        self.core = kubernetes.client.CoreV1Api(client)
        self.batch = kubernetes.client.BatchV1Api(client)
        self.custom = kubernetes.client.CustomObjectsApi(client)
        self.metrics = metrics
        self.instance = socket.gethostname()

    def _count(self, verb: str, resource: str) -> None:
        self.metrics.api_requests.labels(verb, resource).inc()

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create `body` (a ConfigMap, Service or Job) unless it exists; either way return what is stored."""
        kind, name, namespace = body["kind"], body["metadata"]["name"], body["metadata"]["namespace"]
        self._count("create", kind)
        try:
            if kind == "Job":
                return _json(self.batch.create_namespaced_job(namespace, body, _preload_content=False))  # type: ignore[arg-type]
            if kind == "Service":
                return _json(self.core.create_namespaced_service(namespace, body, _preload_content=False))  # type: ignore[arg-type]
            return _json(self.core.create_namespaced_config_map(namespace, body, _preload_content=False))  # type: ignore[arg-type]
        except ApiException as err:
            if err.status != 409:
                raise
        # Made by an earlier reconcile (this operator before a restart): deterministic names make it ours.
        self._count("get", kind)
        if kind == "Job":
            return _json(self.batch.read_namespaced_job(name, namespace, _preload_content=False))
        if kind == "Service":
            return _json(self.core.read_namespaced_service(name, namespace, _preload_content=False))
        return _json(self.core.read_namespaced_config_map(name, namespace, _preload_content=False))

    def set_job_suspend(self, namespace: str, name: str, suspend: bool) -> dict[str, Any]:
        self._count("patch", "Job")
        patch = {"spec": {"suspend": suspend}}
        return _json(self.batch.patch_namespaced_job(name, namespace, patch, _preload_content=False))

    def patch_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Merge-patch the status subresource (a key set to None is removed)."""
        self._count("patch", f"{kind}/status")
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, KINDS_BY_NAME[kind].plural, name, {"status": status}
        )

    def crd_exists(self, name: str) -> bool:
        """Whether the CustomResourceDefinition `name` is installed (e.g. Kueue's workloads.kueue.x-k8s.io)."""
        self._count("get", "CustomResourceDefinition")
        try:
            kubernetes.client.ApiextensionsV1Api(self.core.api_client).read_custom_resource_definition(
                name, _preload_content=False
            )
        except ApiException as err:
            if err.status == 404:
                return False
            raise
        return True

    def workload_of(self, namespace: str, job_uid: str) -> dict[str, Any] | None:
        """Kueue's Workload for the Job with `job_uid` (Kueue labels it with the Job's uid), or None yet."""
        self._count("list", "Workload")
        found = _json(
            self.custom.list_namespaced_custom_object(
                KUEUE_GROUP, KUEUE_VERSION, namespace, "workloads",
                label_selector=f"{WORKLOAD_JOB_UID_LABEL}={job_uid}", _preload_content=False,
            )
        )  # fmt: skip
        items: list[dict[str, Any]] = found.get("items") or []
        return items[0] if items else None

    def set_workload_active(self, namespace: str, name: str, active: bool) -> None:
        """Deactivate (or reactivate) a Workload: Kueue's own way to suspend a queued Job."""
        self._count("patch", "Workload")
        self.custom.patch_namespaced_custom_object(
            KUEUE_GROUP, KUEUE_VERSION, namespace, "workloads", name, {"spec": {"active": active}}
        )

    def log_tail(self, namespace: str, pod: str, container: str, lines: int) -> str:
        self._count("get", "pods/log")
        return str(
            self.core.read_namespaced_pod_log(
                pod, namespace, container=container, tail_lines=lines, _request_timeout=10
            )
        )

    def post_event(self, body: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """A core/v1 Event on the resource (what `kubectl describe` and `cotctl describe` show)."""
        meta = body["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": body["apiVersion"],
                "kind": body["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            },
            "reason": reason,
            "message": message[:MAX_EVENT_MESSAGE],
            "type": type_,
            "source": {"component": MANAGED_BY},
            "reportingComponent": MANAGED_BY,
            "reportingInstance": self.instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        self._count("create", "Event")
        try:
            self.core.create_namespaced_event(meta["namespace"], event, _preload_content=False)  # type: ignore[arg-type]
        except ApiException as err:  # an event is a courtesy: never fail a reconcile for it
            logger.warning("event not posted", extra={"reason": reason, "status": err.status})
