"""The generated CRDs on a real kube-apiserver: examples pass, invalid manifests are refused naming the
field (schema and CEL rules for real), specs are immutable except suspend, and RBAC is least privilege."""

from __future__ import annotations

import copy
import json
import subprocess
from typing import Any

import kubernetes.client
import pytest
import yaml
from kube_apply import apply_manifests
from kubernetes.client.exceptions import ApiException
from operator_process import SETTINGS_CONFIG_MAP, TEST_SETTINGS, kubectl

from cotlab.api import GROUP, KINDS_BY_NAME, VERSION
from tests.conftest import REPO, example_documents, invalid_cases

EXAMPLES = example_documents()
INVALID = invalid_cases()
OPERATOR = "system:serviceaccount:cotlab-system:cotlab-operator"


@pytest.fixture(autouse=True)
def _crds_installed(crds: list[str]) -> None:
    """Fail with the API server's reason when a generated CRD was rejected, not with a 404 later."""


def _create(api: kubernetes.client.ApiClient, namespace: str, doc: dict[str, Any], *, dry_run: bool) -> Any:
    """Create like `kubectl create --validate=strict`: unknown fields are errors, not silently pruned."""
    plural = KINDS_BY_NAME[doc["kind"]].plural
    return kubernetes.client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, doc, dry_run="All" if dry_run else None, field_validation="Strict"
    )


@pytest.mark.parametrize("doc", [d for _, d in EXAMPLES], ids=[i for i, _ in EXAMPLES])
def test_every_example_passes_server_side_dry_run(kube_api: Any, namespace: str, doc: dict[str, Any]) -> None:
    created = _create(kube_api, namespace, copy.deepcopy(doc), dry_run=True)
    assert created["metadata"]["name"] == doc["metadata"]["name"]


@pytest.mark.parametrize("case", INVALID, ids=[c["id"] for c in INVALID])
def test_invalid_manifest_is_rejected_naming_the_field(kube_api: Any, namespace: str, case: dict[str, Any]) -> None:
    with pytest.raises(ApiException) as raised:
        _create(kube_api, namespace, copy.deepcopy(case["manifest"]), dry_run=True)
    assert raised.value.status in (400, 422), raised.value.body
    assert case["server"] in raised.value.body, raised.value.body


def test_defaults_are_applied_by_the_server(kube_api: Any, namespace: str) -> None:
    doc = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "EvalRun",
        "metadata": {"name": "defaults"},
        "spec": {"model": {"source": {"hub": "Qwen/Qwen2.5-32B"}}, "benchmarks": [{"name": "aime24"}], "sampling": {}},
    }
    created = _create(kube_api, namespace, doc, dry_run=True)
    assert created["spec"]["sampling"]["samples"] == 64
    assert created["spec"]["model"]["source"]["revision"] == "main"


def test_spec_is_immutable_except_suspend(kube_api: Any, namespace: str) -> None:
    doc = next(d for _, d in EXAMPLES if d["metadata"]["name"] == "quickstart-lora")
    _create(kube_api, namespace, copy.deepcopy(doc), dry_run=False)
    custom = kubernetes.client.CustomObjectsApi(kube_api)
    args = (GROUP, VERSION, namespace, "finetuneruns", "quickstart-lora")
    with pytest.raises(ApiException) as raised:
        custom.patch_namespaced_custom_object(*args, {"spec": {"training": {"learningRate": 0.5}}})
    assert raised.value.status == 422
    assert "spec is immutable except spec.suspend" in raised.value.body
    patched = custom.patch_namespaced_custom_object(*args, {"spec": {"suspend": True}})
    assert patched["spec"]["suspend"] is True


def test_status_subresource_and_printer_columns(kube_api: Any, namespace: str) -> None:
    doc = next(d for _, d in EXAMPLES if d["metadata"]["name"] == "quickstart-traces")
    _create(kube_api, namespace, copy.deepcopy(doc), dry_run=False)
    custom = kubernetes.client.CustomObjectsApi(kube_api)
    status = {
        "status": {
            "phase": "Succeeded",
            "count": 20,
            "conditions": [
                {
                    "type": "Waiting",
                    "status": "False",
                    "reason": "DependencyReady",
                    "message": "",
                    "lastTransitionTime": "2026-11-28T12:00:00Z",
                },
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Succeeded",
                    "message": "20 traces",
                    "lastTransitionTime": "2026-11-28T12:00:00Z",
                },
            ],
        }
    }
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "tracedatasets", "quickstart-traces", status
    )
    # The table the API server renders for `kubectl get`: the Ready column selects by type, not position.
    response = kube_api.call_api(
        "GET",
        f"{kube_api.configuration.host}/apis/{GROUP}/{VERSION}/namespaces/{namespace}/tracedatasets",
        header_params={"Accept": "application/json;as=Table;g=meta.k8s.io;v=v1"},
    )
    response.read()
    table = json.loads(response.data)
    columns = [c["name"] for c in table["columnDefinitions"]]
    row = dict(zip(columns, table["rows"][0]["cells"], strict=True))
    assert row["Phase"] == "Succeeded" and row["Ready"] == "True" and row["Count"] == 20


def _install_docs() -> list[dict[str, Any]]:
    rendered = subprocess.run(
        [kubectl(), "kustomize", str(REPO / "manifests" / "install")], check=True, capture_output=True, text=True
    ).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    for doc in docs:  # the session's settings (any local file), as the operator tests install them
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == SETTINGS_CONFIG_MAP:
            doc["data"] = dict(TEST_SETTINGS)
    return docs


@pytest.fixture(scope="module")
def installed(kube_api: Any) -> None:
    results = apply_manifests(kube_api, _install_docs())
    assert all(r.ok for r in results), [r for r in results if not r.ok]


# (verb, group, resource, subresource, namespace, allowed)
RBAC_CASES = [
    ("create", "batch", "jobs", "", "team-a", True),
    ("patch", "batch", "jobs", "", "team-a", True),
    ("watch", GROUP, "evalruns", "", "", True),
    ("patch", GROUP, "finetuneruns", "status", "team-a", True),
    ("create", "", "configmaps", "", "team-a", True),
    ("get", "", "pods", "log", "team-a", True),
    ("create", "", "events", "", "team-a", True),
    ("update", GROUP, "evalruns", "finalizers", "team-a", True),
    ("list", "", "pods", "", "team-a", True),
    ("watch", "", "configmaps", "", "", True),
    ("get", "batch", "jobs", "", "team-a", True),
    ("get", "", "pods", "", "team-a", False),  # pods come from the watch; only their logs are read one by one
    ("get", GROUP, "evalruns", "", "team-a", False),
    ("patch", GROUP, "evalruns", "", "team-a", False),
    ("get", "apiextensions.k8s.io", "customresourcedefinitions", "", "", False),  # only Kueue's Workload CRD
    ("get", "", "secrets", "", "", False),
    ("list", "", "secrets", "", "team-a", False),
    ("delete", "batch", "jobs", "", "team-a", False),
    ("delete", GROUP, "evalruns", "", "team-a", False),
    ("update", GROUP, "evalruns", "", "team-a", False),
    ("create", "", "pods", "", "team-a", False),
    ("list", "", "namespaces", "", "", False),
    ("patch", "", "nodes", "", "", False),
    ("create", "", "serviceaccounts", "", "team-a", False),
    ("create", "rbac.authorization.k8s.io", "clusterrolebindings", "", "", False),
]


@pytest.mark.parametrize(
    ("verb", "group", "resource", "subresource", "ns", "allowed"),
    RBAC_CASES,
    ids=[f"{'allow' if c[5] else 'deny'}-{c[0]}-{c[2]}{'/' + c[3] if c[3] else ''}" for c in RBAC_CASES],
)
def test_operator_rbac_is_least_privilege(
    kube_api: Any, installed: None, verb: str, group: str, resource: str, subresource: str, ns: str, allowed: bool
) -> None:
    review = kubernetes.client.V1SubjectAccessReview(
        spec=kubernetes.client.V1SubjectAccessReviewSpec(
            user=OPERATOR,
            groups=["system:serviceaccounts", "system:serviceaccounts:cotlab-system", "system:authenticated"],
            resource_attributes=kubernetes.client.V1ResourceAttributes(
                verb=verb, group=group, resource=resource, subresource=subresource or None, namespace=ns or None
            ),
        )
    )
    result = kubernetes.client.AuthorizationV1Api(kube_api).create_subject_access_review(review)
    assert result.status.allowed is allowed, result.status.reason


def test_operator_token_is_refused_secrets_for_real(kube_api: Any, installed: None) -> None:
    """Impersonate the ServiceAccount against the real server: the request itself is refused (403)."""
    config = kube_api.configuration
    impersonating = kubernetes.client.ApiClient(config)
    impersonating.set_default_header("Impersonate-User", OPERATOR)
    with pytest.raises(ApiException) as raised:
        kubernetes.client.CoreV1Api(impersonating).list_secret_for_all_namespaces()
    assert raised.value.status == 403
    jobs = kubernetes.client.BatchV1Api(impersonating).list_job_for_all_namespaces()
    assert jobs.items is not None


def test_the_network_policy_example_is_accepted(kube_api: Any, namespace: str) -> None:
    docs = [yaml.safe_load((REPO / "manifests" / "network" / "finetune-ranks.yaml").read_text())]
    results = apply_manifests(kube_api, docs, namespace=namespace, dry_run=True)
    assert [(r.kind, r.ok) for r in results] == [("NetworkPolicy", True)], results
