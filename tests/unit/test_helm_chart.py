"""charts/cotlab installs what manifests/install installs: its default render holds the same objects as kustomize's
(and with values-dev.yaml, as manifests/overlays/dev), every value changes exactly the fields it names, and
`helm lint --strict` is clean.

helm is built from its Go module (scripts/go-tool.sh, cached like the control plane); kubectl is the project's own.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO

HELM_MODULE = "helm.sh/helm/v4/cmd/helm@v4.3.2"
KUBECTL = str(Path(sys.executable).parent / "kubectl")
CHART = REPO / "charts" / "cotlab"
Key = tuple[str, str, str]  # kind, namespace ("" when cluster-scoped), name


@cache
def helm() -> str:
    built = subprocess.run(
        ["bash", str(REPO / "scripts" / "go-tool.sh"), HELM_MODULE], capture_output=True, text=True, timeout=1800
    )
    assert built.returncode == 0, built.stderr
    return built.stdout.strip().splitlines()[-1]


class ApiServerYaml(yaml.SafeLoader):
    """Numbers as the API server reads them: kustomize writes the CRDs' default 1.0e-05 as `1e-05`, a float in YAML
    1.2 (and to Kubernetes) but a string to PyYAML's YAML 1.1."""


ApiServerYaml.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9]+[eE][-+]?[0-9]+$"), list("-+0123456789")
)


# Cluster-scoped kinds kustomize does not know (its `namespace:` stamps them too); the API server ignores a namespace
# on them, and the chart does not write one.
CLUSTER_SCOPED = {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}


def by_key(text: str) -> dict[Key, dict[str, Any]]:
    docs = [d for d in yaml.load_all(text, Loader=ApiServerYaml) if d]
    for doc in docs:
        if doc["kind"] in CLUSTER_SCOPED:
            doc["metadata"].pop("namespace", None)
    found = {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d for d in docs}
    assert len(found) == len(docs), "two objects with one kind, namespace and name"
    return found


def differences(got: Any, want: Any, path: str = "") -> list[str]:
    """Where two manifests differ, as paths (a readable failure message for whole-object comparisons)."""
    if isinstance(got, dict) and isinstance(want, dict):
        return [
            d
            for k in sorted(set(got) | set(want), key=str)
            for d in differences(got.get(k), want.get(k), f"{path}.{k}")
        ]
    if isinstance(got, list) and isinstance(want, list) and len(got) == len(want):
        return [d for i, (g, w) in enumerate(zip(got, want, strict=True)) for d in differences(g, w, f"{path}[{i}]")]
    return [] if got == want else [f"{path}: {got!r} != {want!r}"]


def helm_render(*values: str, files: tuple[str, ...] = ()) -> dict[Key, dict[str, Any]]:
    sets = [arg for value in values for arg in ("--set-json", value)]
    sets += [arg for name in files for arg in ("--values", str(CHART / name))]
    out = subprocess.run(
        [helm(), "template", "cotlab", str(CHART), "--include-crds", *sets],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return by_key(out.stdout)


@cache
def kustomize_render(directory: str = "install") -> dict[Key, dict[str, Any]]:
    out = subprocess.run(
        [KUBECTL, "kustomize", str(REPO / "manifests" / directory)], capture_output=True, text=True, check=True
    )
    return by_key(out.stdout)


@pytest.mark.parametrize(
    ("directory", "files"), [("install", ()), ("overlays/dev", ("values-dev.yaml",))], ids=["install", "overlay-dev"]
)
def test_default_render_is_the_kustomize_install(directory: str, files: tuple[str, ...]) -> None:
    chart, kustomize = helm_render(files=files), kustomize_render(directory)
    assert sorted(chart) == sorted(kustomize)
    for key, want in kustomize.items():
        assert chart[key] == want, f"{key}: the chart and manifests/install differ: {differences(chart[key], want)}"


def test_helm_lint_is_clean() -> None:
    linted = subprocess.run([helm(), "lint", "--strict", str(CHART)], capture_output=True, text=True, timeout=120)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in linted.stdout


DEPLOYMENT: Key = ("Deployment", "cotlab-system", "cotlab-operator")


def _container(docs: dict[Key, dict[str, Any]]) -> dict[str, Any]:
    container: dict[str, Any] = docs[DEPLOYMENT]["spec"]["template"]["spec"]["containers"][0]
    return container


def _env(docs: dict[Key, dict[str, Any]], name: str, value: str, *, before: str = "COTLAB_METRICS_PORT") -> None:
    env = _container(docs)["env"]
    at = next((i for i, e in enumerate(env) if e["name"] == name), None)
    if at is not None:
        env[at] = {"name": name, "value": value}
    else:
        env.insert(next(i for i, e in enumerate(env) if e["name"] == before), {"name": name, "value": value})


def _pinned(docs: dict[Key, dict[str, Any]]) -> None:
    _container(docs)["image"] = "registry.example/cotlab/operator@sha256:" + "1" * 64
    _env(docs, "COTLAB_TRAINER_IMAGE", "ghcr.io/cotlab/trainer:0.2.0")


SETTINGS: Key = ("ConfigMap", "cotlab-system", "cotlab-operator-settings")


def _settings(docs: dict[Key, dict[str, Any]]) -> None:
    # Every setting but the metrics port goes to the ConfigMap the Deployment reads with envFrom (and the admission
    # policy reads as its params); the Deployment's own env is unchanged.
    docs[SETTINGS]["data"] |= {
        "COTLAB_ARTIFACT_ROOT": "s3://bucket/cotlab",
        "COTLAB_ARTIFACT_SECRET": "s3-credentials",
        "COTLAB_ALLOWED_IMAGES": "ghcr.io/team/*,ghcr.io/lab/*",
        "COTLAB_RESYNC_SECONDS": "30",
        "COTLAB_WORKERS": "8",
        "COTLAB_API_QPS": "50",
        "COTLAB_WORKLOAD_SELECTOR": "app.kubernetes.io/managed-by",
    }


def _policy_settings(docs: dict[Key, dict[str, Any]]) -> None:
    docs[SETTINGS]["data"] |= {
        "COTLAB_FILE_ROOT": "/mnt/data",
        "COTLAB_ALLOWED_ANNOTATION_PREFIXES": "team.example/,prometheus.io/",
        "COTLAB_ALLOWED_TOLERATIONS": "",  # still written: a missing key is "none allowed" to the API server too
        "COTLAB_ALLOWED_NODE_SELECTORS": "nvidia.com/gpu.product=NVIDIA-H200",
    }


def _no_admission_policy(docs: dict[Key, dict[str, Any]]) -> None:
    del docs[("ValidatingAdmissionPolicy", "", "cotlab-spec-policy")]
    del docs[("ValidatingAdmissionPolicyBinding", "", "cotlab-spec-policy")]


def _no_metrics(docs: dict[Key, dict[str, Any]]) -> None:
    template = docs[DEPLOYMENT]["spec"]["template"]
    del template["metadata"]["annotations"]
    _env(docs, "COTLAB_METRICS_PORT", "0")
    _container(docs)["ports"] = [{"name": "health", "containerPort": 8080}]


def _two_namespaces(docs: dict[Key, dict[str, Any]]) -> None:
    # The namespaced rules move to a Role in each watched namespace; only the read of Kueue's Workload CRD stays
    # cluster-wide.
    cluster_role = docs[("ClusterRole", "", "cotlab-operator")]
    namespaced = [r for r in cluster_role["rules"] if r["apiGroups"] != ["apiextensions.k8s.io"]]
    cluster_role["rules"] = [r for r in cluster_role["rules"] if r["apiGroups"] == ["apiextensions.k8s.io"]]
    labels = {"app.kubernetes.io/part-of": "cotlab"}
    subject = {"kind": "ServiceAccount", "name": "cotlab-operator", "namespace": "cotlab-system"}
    for namespace in ("team-a", "team-b"):
        meta = {"name": "cotlab-operator", "namespace": namespace, "labels": labels}
        docs[("Role", namespace, "cotlab-operator")] = {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta, "rules": namespaced,
        }  # fmt: skip
        docs[("RoleBinding", namespace, "cotlab-operator")] = {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cotlab-operator"},
            "subjects": [subject],
        }  # fmt: skip
    args = _container(docs)["args"]
    args[args.index("--all-namespaces")] = "--namespace=team-a"
    args.insert(args.index("--namespace=team-a") + 1, "--namespace=team-b")


def _existing_namespace(docs: dict[Key, dict[str, Any]]) -> None:
    del docs[("Namespace", "", "cotlab-system")]
    for key in [k for k in docs if k[1] == "cotlab-system"]:
        doc = docs.pop(key)
        doc["metadata"]["namespace"] = "ops"
        docs[(key[0], "ops", key[2])] = doc
    docs[("ClusterRoleBinding", "", "cotlab-operator")]["subjects"][0]["namespace"] = "ops"
    # The admission policy reads the settings ConfigMap where the operator runs.
    docs[("ValidatingAdmissionPolicyBinding", "", "cotlab-spec-policy")]["spec"]["paramRef"]["namespace"] = "ops"


VALUE_CASES: list[tuple[str, list[str], Callable[[dict[Key, dict[str, Any]]], None]]] = [
    (
        "images-by-digest-and-tag",
        [
            'images.operator={"repository": "registry.example/cotlab/operator", "digest": "sha256:' + "1" * 64 + '"}',
            'images.trainer.tag="0.2.0"',
        ],
        _pinned,
    ),
    (
        "operator-settings",
        [
            'settings.artifactRoot="s3://bucket/cotlab"',
            'settings.artifactSecret="s3-credentials"',
            'settings.allowedImages=["ghcr.io/team/*", "ghcr.io/lab/*"]',
            "settings.workers=8",
            "settings.resyncSeconds=30",
            "settings.apiQps=50",
            'settings.workloadSelector="app.kubernetes.io/managed-by"',
        ],
        _settings,
    ),
    (
        "policy-settings",
        [
            'settings.fileRoot="/mnt/data"',
            'settings.allowedAnnotationPrefixes=["team.example/", "prometheus.io/"]',
            "settings.allowedTolerations=[]",
            'settings.allowedNodeSelectors=["nvidia.com/gpu.product=NVIDIA-H200"]',
        ],
        _policy_settings,
    ),
    ("admission-policy-off", ["admissionPolicy.enabled=false"], _no_admission_policy),
    ("metrics-off", ["settings.metricsPort=0"], _no_metrics),
    ("watch-two-namespaces", ['watchNamespaces=["team-a", "team-b"]'], _two_namespaces),
    ("existing-namespace", ['namespace={"name": "ops", "create": false}'], _existing_namespace),
]


@pytest.mark.parametrize(("values", "change"), [c[1:] for c in VALUE_CASES], ids=[c[0] for c in VALUE_CASES])
def test_each_value_changes_what_it_names(values: list[str], change: Callable[[dict[Key, Any]], None]) -> None:
    want = copy.deepcopy(kustomize_render())
    change(want)
    got = helm_render(*values)
    assert sorted(got) == sorted(want)
    for key, doc in want.items():
        assert got[key] == doc, (key, differences(got[key], doc))
