"""Talking to a cluster as kubectl does (kubeconfig, context, namespace), every failure as one line saying what to do.

The kubernetes client is imported here, lazily, and only by commands that change something or read more than
cotlab's own resources: `cotctl validate`, everything under `--local`, and `status`/`results`/`compare` with an
ordinary kubeconfig never pay for it (see kubeconfig.py for why and when). Bodies go in and come out as plain
camelCase dicts (the shape the API server stores and the operator reads), never as the client's model classes.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from cotlab.api.kinds import GROUP, KIND_NAMES_BY_KIND, VERSION

from ..terminal.errors import CliError
from . import kubeconfig
from .kubeconfig import Credentials

FIELD_MANAGER = "cotctl"
CRD_HINT = "install the CRDs first: kubectl apply -k manifests/crds (or manifests/install for the operator too)"
UNREACHABLE_HINT = "check --kubeconfig and --context, or read this machine's runs with --local"


@dataclass(frozen=True)
class Target:
    """Which cluster and namespace the user pointed at, from the kubectl-style flags."""

    kubeconfig: Path | None = None
    context: str | None = None
    namespace: str | None = None
    all_namespaces: bool = False
    request_timeout: float = 30.0


class ClusterError(CliError):
    """A request that failed, said in one line, with the next step as a hint."""

    def __init__(self, message: str, hint: str | None = None, *, not_found: bool = False) -> None:
        super().__init__(message, hint)
        self.not_found = not_found  # the object does not exist (its kind does)
        self.http_status: int | None = None  # the API server's answer, when it answered
        self.server_message = ""  # the API server's own words (its Status message)


def _status_body(body: str | bytes | None) -> dict[str, Any] | None:
    """The API server's Status object in an error body, or None for anything else ("404 page not found")."""
    if not body:
        return None
    try:
        value = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) and value.get("kind") == "Status" else None


def _where(namespace: str | None) -> str:
    return f' in namespace "{namespace}"' if namespace else " across all namespaces"


def explain_api_error(
    status: int, body: str | bytes | None, *, verb: str, resource: str, namespace: str | None, name: str | None
) -> ClusterError:
    """The one-line error for an HTTP error of `verb` on `resource` (e.g. "evalruns.cotlab.dev"); pure, tested."""
    err = _explain(status, body, verb=verb, resource=resource, namespace=namespace, name=name)
    err.http_status = status
    err.server_message = str((_status_body(body) or {}).get("message") or "").strip()
    return err


def _explain(
    status: int, body: str | bytes | None, *, verb: str, resource: str, namespace: str | None, name: str | None
) -> ClusterError:
    server = _status_body(body) or {}
    said = str(server.get("message") or "").strip()
    target = f'{resource} "{name}"' if name else resource
    if status == 401:
        return ClusterError(
            "the cluster rejected the credentials (401 Unauthorized)", "log in again, or pick another --context"
        )
    if status == 403:
        return ClusterError(
            f"forbidden: you may not {verb} {target}{_where(namespace)}",
            f"ask for RBAC that allows it; check with: kubectl auth can-i {verb} {resource}"
            + (f" -n {namespace}" if namespace else " -A"),
        )
    if status == 404:
        details = server.get("details") or {}
        if server.get("reason") == "NotFound" and details.get("name"):
            return ClusterError(
                f'{resource} "{details["name"]}" not found{_where(namespace)}',
                "list what exists with: cotctl status" + (f" -n {namespace}" if namespace else " -A"),
                not_found=True,
            )
        if resource.endswith(f".{GROUP}"):
            return ClusterError(f"the cluster does not serve {resource}: the cotlab CRDs are not installed", CRD_HINT)
        return ClusterError(f"{verb} {target}: not found{_where(namespace)}")
    if status == 409:
        return ClusterError(
            f"{verb} {target}: conflict: {said}", "re-run with --force-conflicts to take over the fields"
        )
    if status == 422:
        return ClusterError(f"{verb} {target}: rejected by the API server: {said}")
    reason = server.get("reason") or "error"
    return ClusterError(f"{verb} {target}: HTTP {status} {reason}" + (f": {said}" if said else ""))


class Cluster:
    """One kubeconfig context, speaking dicts; every call raises `ClusterError` on failure.

    Lists and gets of cotlab's resources go through the standard library when the kubeconfig allows it
    (`kubeconfig.load`): the commands that only read, like `cotctl status`, then never import the kubernetes
    client. Everything else, and every kubeconfig the standard library cannot serve, uses the client."""

    def __init__(
        self,
        client: Any,
        *,
        namespace: str,
        server: str,
        timeout: float,
        credentials: Credentials | None = None,
        target: Target | None = None,
    ) -> None:
        self._client, self.namespace, self.server, self.timeout = client, namespace, server, timeout
        self.credentials, self.target = credentials, target
        self._ssl = credentials.ssl_context() if credentials and credentials.base[0] == "https" else None

    # -- connecting ----------------------------------------------------------------------------------------

    @classmethod
    def connect(cls, target: Target) -> Cluster:
        """A connection for the kubeconfig (`--kubeconfig`, else $KUBECONFIG, else ~/.kube/config) and context."""
        try:
            credentials = kubeconfig.load(target.kubeconfig, target.context)
        except (kubeconfig.KubeconfigError, OSError, ssl.SSLError) as err:
            raise _unusable(target, err) from None
        if credentials is None:
            client, namespace, server = _kubernetes_client(target)
            return cls(client, namespace=namespace, server=server, timeout=target.request_timeout)
        return cls(
            None,
            namespace=target.namespace or credentials.namespace or "default",
            server=credentials.server,
            timeout=target.request_timeout,
            credentials=credentials,
            target=target,
        )

    @property
    def client(self) -> Any:
        """The kubernetes client, made on first use (reads of cotlab's resources may never need it)."""
        if self._client is None:
            assert self.target is not None
            self._client, _, _ = _kubernetes_client(self.target)
        return self._client

    def _read(self, path: str, query: dict[str, str], *, verb: str, resource: str, namespace: str | None,
              name: str | None = None) -> dict[str, Any]:  # fmt: skip
        """GET `path` with the standard library's HTTP client (only when `self.credentials` is set)."""
        assert self.credentials is not None
        scheme, host, prefix = self.credentials.base
        url = prefix + path + (f"?{urlencode(query)}" if query else "")
        headers = {"Accept": "application/json", "User-Agent": "cotctl"}
        if self.credentials.token:
            headers["Authorization"] = f"Bearer {self.credentials.token}"
        connection = (
            http.client.HTTPSConnection(host, timeout=self.timeout, context=self._ssl)
            if scheme == "https"
            else http.client.HTTPConnection(host, timeout=self.timeout)
        )
        try:
            connection.request("GET", url, headers=headers)
            response = connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as err:
            raise ClusterError(f"no cluster reachable at {self.server}: {_short(err)}", UNREACHABLE_HINT) from None
        finally:
            connection.close()
        if response.status >= 400:
            raise explain_api_error(response.status, body, verb=verb, resource=resource, namespace=namespace, name=name)
        value = json.loads(body)
        return value if isinstance(value, dict) else {}

    @contextlib.contextmanager
    def _calling(self, verb: str, resource: str, namespace: str | None, name: str | None = None) -> Iterator[None]:
        """Turn the client's exceptions into one line that names the verb, the resource and the server."""
        import urllib3
        from kubernetes.client.exceptions import ApiException

        try:
            yield
        except ApiException as err:
            raise explain_api_error(
                int(err.status or 0), err.body, verb=verb, resource=resource, namespace=namespace, name=name
            ) from None
        except urllib3.exceptions.HTTPError as err:
            cause = getattr(err, "reason", None) or err
            raise ClusterError(f"no cluster reachable at {self.server}: {_short(cause)}", UNREACHABLE_HINT) from None

    def _api(self, name: str) -> Any:
        import kubernetes.client

        return getattr(kubernetes.client, name)(self.client)

    # -- cotlab resources --------------------------------------------------------------------------------

    def list_resources(self, kind: str, *, namespace: str | None, selector: str | None = None) -> list[dict[str, Any]]:
        """Every `kind` in `namespace` (None: all namespaces) matching the label selector."""
        plural = KIND_NAMES_BY_KIND[kind].plural
        if self.credentials is not None:
            where = f"/namespaces/{namespace}" if namespace else ""
            query = {"labelSelector": selector} if selector else {}
            found = self._read(f"/apis/{GROUP}/{VERSION}{where}/{plural}", query, verb="list",
                               resource=f"{plural}.{GROUP}", namespace=namespace)  # fmt: skip
            items: list[dict[str, Any]] = found.get("items") or []
        else:
            api = self._api("CustomObjectsApi")
            options: dict[str, Any] = {"_preload_content": False, "_request_timeout": self.timeout}
            if selector:
                options["label_selector"] = selector
            with self._calling("list", f"{plural}.{GROUP}", namespace):
                if namespace is None:
                    response = api.list_cluster_custom_object(GROUP, VERSION, plural, **options)
                else:
                    response = api.list_namespaced_custom_object(GROUP, VERSION, namespace, plural, **options)
                items = _json(response).get("items") or []
        for item in items:  # a list's items carry no kind; the callers parse them into typed resources
            item.setdefault("apiVersion", f"{GROUP}/{VERSION}")
            item.setdefault("kind", kind)
        return items

    def get_resource(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        plural = KIND_NAMES_BY_KIND[kind].plural
        if self.credentials is not None:
            path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}/{name}"
            return self._read(path, {}, verb="get", resource=f"{plural}.{GROUP}", namespace=namespace, name=name)
        with self._calling("get", f"{plural}.{GROUP}", namespace, name):
            response = self._api("CustomObjectsApi").get_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name, _preload_content=False, _request_timeout=self.timeout
            )
            return _json(response)

    def patch_resource(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """A JSON merge patch of the resource (what `kubectl patch --type=merge` sends)."""
        plural = KIND_NAMES_BY_KIND[kind].plural
        with self._calling("patch", f"{plural}.{GROUP}", namespace, name):
            response = self._api("CustomObjectsApi").patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
                patch,
                field_manager=FIELD_MANAGER,
                _content_type="application/merge-patch+json",
                _preload_content=False,
                _request_timeout=self.timeout,
            )
            return _json(response)

    def delete_resource(self, kind: str, namespace: str, name: str) -> None:
        """Delete in the background: the garbage collector removes the Job, its pods and the spec ConfigMap."""
        plural = KIND_NAMES_BY_KIND[kind].plural
        with self._calling("delete", f"{plural}.{GROUP}", namespace, name):
            self._api("CustomObjectsApi").delete_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
                propagation_policy="Background",
                _preload_content=False,
                _request_timeout=self.timeout,
            )

    def apply_resource(self, body: dict[str, Any], *, dry_run: bool, force: bool) -> dict[str, Any]:
        """Server-side apply of `body` (its namespace set) as field manager `cotctl`; returns what was stored."""
        kind, meta = body["kind"], body["metadata"]
        plural = KIND_NAMES_BY_KIND[kind].plural
        options: dict[str, Any] = {"field_manager": FIELD_MANAGER, "force": force}
        if dry_run:
            options["dry_run"] = "All"
        with self._calling("patch", f"{plural}.{GROUP}", meta["namespace"], meta["name"]):
            response = self._api("CustomObjectsApi").patch_namespaced_custom_object(
                GROUP,
                VERSION,
                meta["namespace"],
                plural,
                meta["name"],
                body,
                _content_type="application/apply-patch+yaml",
                _preload_content=False,
                _request_timeout=self.timeout,
                **options,
            )
            return _json(response)

    def replace_resource(self, body: dict[str, Any], *, dry_run: bool) -> dict[str, Any]:
        """PUT `body` (with the stored resourceVersion) over the resource: the whole spec becomes `body`'s."""
        kind, meta = body["kind"], body["metadata"]
        plural = KIND_NAMES_BY_KIND[kind].plural
        options: dict[str, Any] = {"field_manager": FIELD_MANAGER} | ({"dry_run": "All"} if dry_run else {})
        with self._calling("update", f"{plural}.{GROUP}", meta["namespace"], meta["name"]):
            response = self._api("CustomObjectsApi").replace_namespaced_custom_object(
                GROUP, VERSION, meta["namespace"], plural, meta["name"], body,
                _preload_content=False, _request_timeout=self.timeout, **options,
            )  # fmt: skip
            return _json(response)

    def create_resource(self, body: dict[str, Any], *, dry_run: bool) -> dict[str, Any]:
        """POST `body` into its namespace (`metadata.generateName` works: the server picks the name)."""
        kind, meta = body["kind"], body["metadata"]
        plural = KIND_NAMES_BY_KIND[kind].plural
        options: dict[str, Any] = {"field_manager": FIELD_MANAGER} | ({"dry_run": "All"} if dry_run else {})
        with self._calling("create", f"{plural}.{GROUP}", meta["namespace"], meta.get("name")):
            response = self._api("CustomObjectsApi").create_namespaced_custom_object(
                GROUP, VERSION, meta["namespace"], plural, body,
                _preload_content=False, _request_timeout=self.timeout, **options,
            )  # fmt: skip
            return _json(response)

    def find_resource(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The resource, or None when it does not exist (a missing CRD is still an error)."""
        try:
            return self.get_resource(kind, namespace, name)
        except ClusterError as err:
            if err.not_found:
                return None
            raise

    # -- the operator's children -------------------------------------------------------------------------

    def list_jobs(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        with self._calling("list", "jobs.batch", namespace):
            response = self._api("BatchV1Api").list_namespaced_job(
                namespace, label_selector=selector, _preload_content=False, _request_timeout=self.timeout
            )
            return list(_json(response).get("items") or [])

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        with self._calling("list", "pods", namespace):
            response = self._api("CoreV1Api").list_namespaced_pod(
                namespace, label_selector=selector, _preload_content=False, _request_timeout=self.timeout
            )
            return list(_json(response).get("items") or [])

    def list_events(self, namespace: str, involved: str) -> list[dict[str, Any]]:
        """Events about the object named `involved` (of any kind) in `namespace`."""
        with self._calling("list", "events", namespace):
            response = self._api("CoreV1Api").list_namespaced_event(
                namespace,
                field_selector=f"involvedObject.name={involved}",
                _preload_content=False,
                _request_timeout=self.timeout,
            )
            return list(_json(response).get("items") or [])

    def pod_log(
        self, namespace: str, pod: str, container: str, *, tail: int | None = None, since: int | None = None
    ) -> str:
        """The container's log so far."""
        with self._calling("get", "pods/log", namespace, pod):
            response = self._api("CoreV1Api").read_namespaced_pod_log(
                pod,
                namespace,
                container=container,
                tail_lines=tail,
                since_seconds=since,
                _preload_content=False,
                _request_timeout=self.timeout,
            )
            return bytes(response.data).decode("utf-8", errors="replace")

    def follow_log(
        self, namespace: str, pod: str, container: str, *, tail: int | None = None, since: int | None = None
    ) -> Iterator[str]:
        """The container's log lines as they are written, until the container exits (`kubectl logs -f`)."""
        with self._calling("get", "pods/log", namespace, pod):
            response = self._api("CoreV1Api").read_namespaced_pod_log(
                pod,
                namespace,
                container=container,
                follow=True,
                tail_lines=tail,
                since_seconds=since,
                _preload_content=False,  # no request timeout: a pod that is quiet for an hour is not a dead connection
            )
        try:
            pending = b""
            with self._calling("get", "pods/log", namespace, pod):
                for chunk in response.stream(amt=None, decode_content=True):
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        yield line.decode("utf-8", errors="replace")
            if pending:
                yield pending.decode("utf-8", errors="replace")
        finally:
            response.release_conn()


def _unusable(target: Target, err: object) -> ClusterError:
    where = f" ({target.kubeconfig or os.environ.get('KUBECONFIG') or '~/.kube/config'})"
    hint = "pass --kubeconfig FILE or set KUBECONFIG; without a cluster, use --local"
    return ClusterError(f"no usable kubeconfig{where}: {err}", hint)


def _kubernetes_client(target: Target) -> tuple[Any, str, str]:
    """The kubernetes client for the target's context, with the context's namespace and the server's URL."""
    try:
        import kubernetes.client
        import kubernetes.config
    except ImportError:
        raise CliError("the kubernetes client is not installed", "pip install 'cotlab[cli]'") from None

    config_file = str(target.kubeconfig) if target.kubeconfig is not None else None
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=config_file, context=target.context, client_configuration=configuration
        )
        contexts, active = kubernetes.config.list_kube_config_contexts(config_file)  # type: ignore[no-untyped-call]
    except (kubernetes.config.ConfigException, OSError, TypeError, ValueError) as err:
        raise _unusable(target, err) from None
    chosen = next((c for c in contexts or [] if c.get("name") == target.context), active) if target.context else active
    context_namespace = ((chosen or {}).get("context") or {}).get("namespace")
    configuration.retries = False  # a cluster that is down should say so at once, not after three retries
    namespace = target.namespace or context_namespace or "default"
    return kubernetes.client.ApiClient(configuration), namespace, str(configuration.host)


def _json(response: Any) -> dict[str, Any]:
    value = json.loads(response.data)
    return value if isinstance(value, dict) else {}


def _short(cause: object) -> str:
    """The useful end of a urllib3 error ("Connection refused"), not its repr of the connection object."""
    text = str(cause)
    return text.rsplit(": ", 1)[-1] if ": " in text else text
