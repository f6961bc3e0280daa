"""Every request the operator sends: throttled, timed out, counted, and each tied to the RBAC rule it needs.

Bodies go in and come out as plain camelCase dicts (the shape the API server sends), through the client's raw
request path: the client's model classes are never built, so a page of 500 pods costs its JSON, not 500 object
graphs. Each request names its `Permission`; `manifests/install/clusterrole.yaml` grants exactly the permissions
named in this package's code (tests/unit/test_install_manifests.py reads both).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import kubernetes.client
import urllib3
from kubernetes.client.exceptions import ApiException

from cotlab.api import GROUP, VERSION
from cotlab.api.children import MANAGED_BY
from cotlab.api.resources import KINDS_BY_NAME

from .metrics import OperatorMetrics
from .settings import OperatorSettings

logger = logging.getLogger(__name__)

MAX_EVENT_MESSAGE = 1024
KUEUE_GROUP = "kueue.x-k8s.io"
KUEUE_WORKLOAD_CRD = "workloads.kueue.x-k8s.io"  # its presence means "Kueue is installed"; it names the versions
_CONNECT_SECONDS = 10.0
_LOG_TAIL_SECONDS = 10.0


@dataclass(frozen=True)
class ApiKind:
    """Where a kind lives in the API: group, version, plural."""

    group: str
    version: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        parts = [base]
        if namespace is not None and self.namespaced:
            parts.append(f"namespaces/{namespace}")
        parts.append(self.plural)
        if name is not None:
            parts.append(name)
        if subresource is not None:
            parts.append(subresource)
        return "/".join(parts)


JOBS = ApiKind("batch", "v1", "jobs")
PODS = ApiKind("", "v1", "pods")
CONFIG_MAPS = ApiKind("", "v1", "configmaps")
SERVICES = ApiKind("", "v1", "services")
EVENTS = ApiKind("", "v1", "events")
CRDS = ApiKind("apiextensions.k8s.io", "v1", "customresourcedefinitions", namespaced=False)
RESOURCE_APIS = {kind.kind: ApiKind(GROUP, VERSION, kind.plural) for kind in KINDS_BY_NAME.values()}
CHILD_APIS = {"Job": JOBS, "ConfigMap": CONFIG_MAPS, "Service": SERVICES}


def workload_version(crd: dict[str, Any]) -> str | None:
    """The version of a Workload CRD to speak: the storage version when it is served (no conversion webhook on the
    way: Kueue serves older versions through one), else the first served; None when none is served."""
    versions = [v for v in (crd.get("spec") or {}).get("versions") or [] if v.get("served")]
    stored = [v for v in versions if v.get("storage")]
    chosen = (stored or versions or [{}])[0].get("name")
    return str(chosen) if chosen else None


def kueue_workloads(version: str) -> ApiKind:
    """Kueue's Workloads at `version` (discovered from the CRD: `KubeApi.kueue_version`)."""
    return ApiKind(KUEUE_GROUP, version, "workloads")


class Permission(Enum):
    """Every request the operator makes, as the RBAC rule it needs: (API group, resource, verb)."""

    LIST_TRACEDATASETS = (GROUP, "tracedatasets", "list")
    WATCH_TRACEDATASETS = (GROUP, "tracedatasets", "watch")
    PATCH_TRACEDATASET_STATUS = (GROUP, "tracedatasets/status", "patch")
    LIST_FINETUNERUNS = (GROUP, "finetuneruns", "list")
    WATCH_FINETUNERUNS = (GROUP, "finetuneruns", "watch")
    PATCH_FINETUNERUN_STATUS = (GROUP, "finetuneruns/status", "patch")
    LIST_EVALRUNS = (GROUP, "evalruns", "list")
    WATCH_EVALRUNS = (GROUP, "evalruns", "watch")
    PATCH_EVALRUN_STATUS = (GROUP, "evalruns/status", "patch")
    LIST_JOBS = ("batch", "jobs", "list")
    WATCH_JOBS = ("batch", "jobs", "watch")
    CREATE_JOBS = ("batch", "jobs", "create")
    GET_JOBS = ("batch", "jobs", "get")
    PATCH_JOBS = ("batch", "jobs", "patch")
    LIST_PODS = ("", "pods", "list")
    WATCH_PODS = ("", "pods", "watch")
    GET_POD_LOGS = ("", "pods/log", "get")
    LIST_CONFIG_MAPS = ("", "configmaps", "list")
    WATCH_CONFIG_MAPS = ("", "configmaps", "watch")
    CREATE_CONFIG_MAPS = ("", "configmaps", "create")
    GET_CONFIG_MAPS = ("", "configmaps", "get")
    LIST_SERVICES = ("", "services", "list")
    WATCH_SERVICES = ("", "services", "watch")
    CREATE_SERVICES = ("", "services", "create")
    GET_SERVICES = ("", "services", "get")
    CREATE_EVENTS = ("", "events", "create")
    GET_CRDS = ("apiextensions.k8s.io", "customresourcedefinitions", "get")
    LIST_WORKLOADS = (KUEUE_GROUP, "workloads", "list")
    WATCH_WORKLOADS = (KUEUE_GROUP, "workloads", "watch")
    PATCH_WORKLOADS = (KUEUE_GROUP, "workloads", "patch")


# Not a request, but what one needs: children carry ownerReferences with blockOwnerDeletion, which the
# OwnerReferencesPermissionEnforcement admission plugin (where it is on) allows only with update on the owner's
# finalizers (`builders.owner_reference`).
OWNER_FINALIZERS = tuple((GROUP, f"{kind.plural}/finalizers", "update") for kind in KINDS_BY_NAME.values())

# What creating a child needs: create it, and read it back when it exists already (409).
_CREATE = {
    "Job": (Permission.CREATE_JOBS, Permission.GET_JOBS),
    "ConfigMap": (Permission.CREATE_CONFIG_MAPS, Permission.GET_CONFIG_MAPS),
    "Service": (Permission.CREATE_SERVICES, Permission.GET_SERVICES),
}
_PATCH_STATUS = {
    "TraceDataset": Permission.PATCH_TRACEDATASET_STATUS,
    "FineTuneRun": Permission.PATCH_FINETUNERUN_STATUS,
    "EvalRun": Permission.PATCH_EVALRUN_STATUS,
}


class ChildRejected(Exception):
    """The API server refused to create a child: a quota (403) or an admission rule (422); its words say which."""

    def __init__(self, kind: str, name: str, status: int, message: str) -> None:
        super().__init__(f"creating {kind} {name} was refused ({status}): {message}")
        self.status = status


class Throttle:
    """Client-side rate limit, a token bucket as client-go's: `qps` requests a second on average, `burst` at once.

    Thread-safe: each caller reserves the next free slot under the lock and sleeps outside it.
    """

    def __init__(self, qps: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.qps, self.burst, self.clock = qps, max(1, burst), clock
        self._tokens = float(self.burst)
        self._stamp = clock()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take a token; return how many seconds to wait before using it."""
        with self._lock:
            now = self.clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.qps)
            self._stamp = now
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    def acquire(self) -> None:
        wait = self.reserve()
        if wait > 0:
            time.sleep(wait)


def api_message(err: ApiException) -> str:
    """The API server's own message (a Status body's `message`), else the HTTP reason."""
    try:
        body = json.loads(err.body or "{}")
    except ValueError:
        return str(err.reason)
    return str(body.get("message") or err.reason) if isinstance(body, dict) else str(err.reason)


class KubeApi:
    """The raw client, throttled and timed out; each method is one kind of request."""

    def __init__(
        self, client: kubernetes.client.ApiClient, metrics: OperatorMetrics, settings: OperatorSettings
    ) -> None:
        self.client = client
        self.metrics = metrics
        self.settings = settings
        self.throttle = Throttle(settings.api_qps, settings.api_burst)
        self.instance = socket.gethostname()

    def _call(
        self,
        permission: Permission,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | int | bool] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | tuple[float, float] | None = None,
        stream: bool = False,
    ) -> Any:
        """One request: throttled, counted under its RBAC verb and resource, given up on after the timeout."""
        group, resource, verb = permission.value
        self.throttle.acquire()
        self.metrics.api_requests.labels(verb, resource).inc()
        params = self.client.param_serialize(
            method=method,
            resource_path=path,
            query_params=[(k, str(v).lower() if isinstance(v, bool) else str(v)) for k, v in (query or {}).items()],
            header_params={"Accept": "application/json", **({"Content-Type": content_type} if body else {})},
            body=body,
            auth_settings=["BearerToken"],
        )
        timeout = timeout or (_CONNECT_SECONDS, self.settings.api_timeout_seconds)
        response = self.client.call_api(*params, _request_timeout=timeout)
        if not 200 <= response.status <= 299:
            response.read()  # type: ignore[no-untyped-call]
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        if stream:
            return response.response
        return json.loads(response.read())  # type: ignore[no-untyped-call]

    # -- lists and watches (informers) ----------------------------------------------------------

    def list_page(
        self, permission: Permission, api: ApiKind, namespace: str | None, selector: str | None, token: str | None
    ) -> dict[str, Any]:
        """One page of a list (`list_page_size` objects at most), raw."""
        query: dict[str, str | int | bool] = {"limit": self.settings.list_page_size}
        if selector:
            query["labelSelector"] = selector
        if token:
            query["continue"] = token
        return self._call(permission, "GET", api.path(namespace), query=query)  # type: ignore[no-any-return]

    def watch(
        self, permission: Permission, api: ApiKind, namespace: str | None, selector: str | None, version: str
    ) -> Any:
        """A watch from `version`, as the raw streaming response; the server ends it after watch_server_timeout."""
        query: dict[str, str | int | bool] = {
            "watch": True,
            "allowWatchBookmarks": True,
            "resourceVersion": version,
            "timeoutSeconds": self.settings.watch_server_timeout,
        }
        if selector:
            query["labelSelector"] = selector
        timeout = (_CONNECT_SECONDS, float(self.settings.watch_client_timeout))
        return self._call(permission, "GET", api.path(namespace), query=query, timeout=timeout, stream=True)

    # -- children -----------------------------------------------------------------------------------

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create `body` (a ConfigMap, Service or Job); if the name is taken, return the object that holds it
        (whose owner the caller checks). A quota or admission refusal raises `ChildRejected`."""
        kind, name, namespace = body["kind"], body["metadata"]["name"], body["metadata"]["namespace"]
        create, get = _CREATE[kind]
        api = CHILD_APIS[kind]
        try:
            return self._call(create, "POST", api.path(namespace), body=body)  # type: ignore[no-any-return]
        except ApiException as err:
            if err.status in (403, 422):
                raise ChildRejected(kind, name, int(err.status), api_message(err)) from None
            if err.status != 409:
                raise
        return self._call(get, "GET", api.path(namespace, name))  # type: ignore[no-any-return]

    def set_job_suspend(self, namespace: str, name: str, suspend: bool) -> dict[str, Any]:
        return self._call(  # type: ignore[no-any-return]
            Permission.PATCH_JOBS, "PATCH", JOBS.path(namespace, name),
            body={"spec": {"suspend": suspend}}, content_type="application/merge-patch+json",
        )  # fmt: skip

    def patch_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch the status subresource (a key set to None is removed)."""
        return self._call(  # type: ignore[no-any-return]
            _PATCH_STATUS[kind], "PATCH", RESOURCE_APIS[kind].path(namespace, name, "status"),
            body={"status": status}, content_type="application/merge-patch+json",
        )  # fmt: skip

    # -- Kueue --------------------------------------------------------------------------------------

    def kueue_version(self) -> str | None:
        """The version of Kueue's API to use (the Workload CRD's storage version, which needs no conversion
        webhook), or None when Kueue is not installed."""
        try:
            crd = self._call(Permission.GET_CRDS, "GET", CRDS.path(name=KUEUE_WORKLOAD_CRD))
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return workload_version(crd)

    def set_workload_active(self, version: str, namespace: str, name: str, active: bool) -> None:
        """Deactivate (or reactivate) a Workload: Kueue's own way to suspend a queued Job."""
        self._call(
            Permission.PATCH_WORKLOADS, "PATCH", kueue_workloads(version).path(namespace, name),
            body={"spec": {"active": active}}, content_type="application/merge-patch+json",
        )  # fmt: skip

    # -- pods and events ----------------------------------------------------------------------------

    def log_tail(self, namespace: str, pod: str, container: str, lines: int) -> str:
        response = self._call(
            Permission.GET_POD_LOGS, "GET", PODS.path(namespace, pod, "log"),
            query={"container": container, "tailLines": lines}, timeout=(_CONNECT_SECONDS, _LOG_TAIL_SECONDS),
            stream=True,
        )  # fmt: skip
        return str(response.data.decode("utf-8", errors="replace"))

    def post_event(self, body: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """A core/v1 Event on the resource (what `kubectl describe` and `cotctl describe` show)."""
        meta = body["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
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
        try:
            self._call(Permission.CREATE_EVENTS, "POST", EVENTS.path(meta["namespace"]), body=event)
        except ApiException as err:  # an event is a courtesy: never fail a reconcile for it
            logger.warning("event not posted", extra={"reason": reason, "status": err.status})


def default_api(metrics: OperatorMetrics, settings: OperatorSettings) -> KubeApi:
    """A client from the pod's service account in a cluster, else from KUBECONFIG / ~/.kube/config."""
    import kubernetes.config

    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    # A connection per watch stream (up to 9 per namespace) plus the workers': more than urllib3's default 10.
    configuration.connection_pool_maxsize = 64
    # No retries hidden in urllib3 (by default up to 3 more tries of a 429, each after its Retry-After): the
    # informers' and the work queue's backoff decide when to ask again, and the throttle counts every request.
    # A connection that could not be made is tried again at once (nothing reached the server).
    configuration.retries = urllib3.Retry(
        total=None, connect=2, read=0, redirect=0, status=0, other=0, respect_retry_after_header=False,
        raise_on_status=False,
    )  # fmt: skip
    return KubeApi(kubernetes.client.ApiClient(configuration), metrics, settings)
