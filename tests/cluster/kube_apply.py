"""`kubectl apply --server-side` for the cluster tests, through the Python client.

kubectl is not available in the test environment, so manifests (CRDs, the
install kustomization's output, examples) are applied here with the dynamic
client's server-side apply. Every document gets a result carrying the API's
status code and message instead of an exception, so a test can assert, for
example, that a server-side dry run of an invalid object is rejected with 422
and a specific message.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes.client
import yaml
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import DynamicApiError, ResourceNotFoundError

FIELD_MANAGER = "cotlab-tests"
# A CRD applied a moment ago may not be in discovery yet.
_DISCOVERY_RETRY_SECONDS = 10.0


@dataclass(frozen=True)
class ApplyResult:
    """The outcome of applying one document: `status` is the HTTP code (None if it never reached the API)."""

    kind: str
    name: str
    namespace: str | None
    status: int | None
    reason: str
    message: str

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def load_manifests(path: Path) -> list[dict[str, Any]]:
    """All non-empty YAML documents in a file, or in every `*.yaml`/`*.yml` of a directory (sorted)."""
    files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")]) if path.is_dir() else [path]
    return [doc for f in files for doc in yaml.safe_load_all(f.read_text()) if doc]


def _error(doc: Mapping[str, Any], namespace: str | None, status: int | None, body: str, fallback: str) -> ApplyResult:
    reason, message = "", fallback
    try:
        parsed = json.loads(body)
        reason, message = parsed.get("reason", ""), parsed.get("message", fallback)
    except (ValueError, TypeError, AttributeError):
        message = body or fallback
    meta = doc.get("metadata") or {}
    return ApplyResult(str(doc.get("kind", "")), str(meta.get("name", "")), namespace, status, reason, message)


def apply_manifests(
    api_client: kubernetes.client.ApiClient,
    docs: Iterable[Mapping[str, Any]],
    namespace: str | None = None,
    dry_run: bool = False,
) -> list[ApplyResult]:
    """Server-side apply each document in order; one `ApplyResult` per document, never raising on API errors.

    `namespace` is the default for namespaced objects without one (like
    `kubectl apply -n`); `dry_run` sends `dryRun=All`, so the API validates
    (schemas, CEL rules, admission) without persisting. `List` kinds are
    expanded. Conflicts with other field managers are forced, as the tests own
    the cluster.
    """
    with tempfile.TemporaryDirectory(prefix="cotlab-discovery-") as cache:
        # A private discovery cache: the default one is keyed by host:port and
        # would go stale across test sessions that reuse a port.
        dyn = DynamicClient(api_client, cache_file=str(Path(cache) / "discovery.json"))  # type: ignore[no-untyped-call]
        results: list[ApplyResult] = []
        for doc in _expand_lists(docs):
            results.append(_apply_one(dyn, doc, namespace, dry_run))
        return results


def _expand_lists(docs: Iterable[Mapping[str, Any]]) -> Iterable[Mapping[str, Any]]:
    for doc in docs:
        if str(doc.get("kind", "")).endswith("List") and "items" in doc:
            yield from doc["items"] or []
        else:
            yield doc


def _apply_one(dyn: DynamicClient, doc: Mapping[str, Any], namespace: str | None, dry_run: bool) -> ApplyResult:
    api_version, kind = str(doc.get("apiVersion", "")), str(doc.get("kind", ""))
    meta = doc.get("metadata") or {}
    deadline = time.monotonic() + _DISCOVERY_RETRY_SECONDS
    while True:
        try:
            resource = dyn.resources.get(api_version=api_version, kind=kind)
            break
        except ResourceNotFoundError:
            if time.monotonic() > deadline:
                return _error(doc, namespace, None, "", f"no resource {kind} in {api_version} (discovery)")
            dyn.resources.invalidate_cache()
            time.sleep(0.2)
    ns = (meta.get("namespace") or namespace) if resource.namespaced else None
    body = dict(doc)
    if ns is not None:
        body["metadata"] = {**meta, "namespace": ns}
    kwargs: dict[str, Any] = {"field_manager": FIELD_MANAGER, "force_conflicts": True}
    if dry_run:
        kwargs["dry_run"] = "All"
    try:
        # Sent as YAML, not JSON: the body is an apply-patch+yaml, and the apiserver's YAML 1.1 reader takes
        # JSON's `1e-05` for a string (PyYAML writes `1.0e-05`, a float in either reading).
        dyn.patch(  # type: ignore[no-untyped-call]
            resource,
            body=yaml.safe_dump(body),
            name=str(meta.get("name", "")),
            namespace=ns,
            content_type="application/apply-patch+yaml",
            **kwargs,
        )
    except DynamicApiError as err:
        return _error(doc, ns, err.status, err.body or "", str(err.summary()))  # type: ignore[no-untyped-call]
    except ApiException as err:
        return _error(doc, ns, err.status, err.body or "", str(err.reason))
    except ValueError as err:  # no metadata.name, or a namespaced kind without a namespace
        return _error(doc, ns, None, "", str(err))
    # Apply answers 200 or 201; the dynamic client does not expose which.
    return ApplyResult(kind, str(meta.get("name", "")), ns, 200, "", "")
