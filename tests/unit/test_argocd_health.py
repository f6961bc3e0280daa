"""`cotctl init`'s Argo CD health check, run by the Lua VM Argo CD runs it with (gopher-lua, with the libraries
Argo CD opens for argocd-cm scripts), against resources in each state the operator writes.

tests/tools/argocd-health is a small Go program built here once (seconds; the module comes from the Go module
proxy) and cached under ~/.cache/cotlab. Without Go the test is skipped on a developer's machine and fails in CI.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from cotlab.api.conditions import Reason
from cotlab.cli.main import app

TOOL = Path(__file__).resolve().parents[1] / "tools" / "argocd-health"
# Argo CD turns any other status into Unknown ("Lua returned an invalid health status").
VALID = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}
NOW = "2026-12-01T00:00:00Z"


@pytest.fixture(scope="module")
def argocd_health(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = shutil.which("go")
    if go is None:
        if os.environ.get("CI") or os.environ.get("COTLAB_REQUIRE_CLUSTER") == "1":
            pytest.fail("Go is needed to build tests/tools/argocd-health")
        pytest.skip("Go is not installed")
    sources = b"".join((TOOL / name).read_bytes() for name in ("go.mod", "go.sum", "main.go"))
    cache = Path(os.environ.get("COTLAB_CACHE", Path.home() / ".cache" / "cotlab")) / "tools"
    binary = cache / f"argocd-health-{hashlib.sha256(sources).hexdigest()[:12]}"
    if not binary.exists():
        cache.mkdir(parents=True, exist_ok=True)
        building = tmp_path_factory.mktemp("go") / "argocd-health"
        subprocess.run([go, "build", "-o", str(building), "."], cwd=TOOL, check=True, timeout=600)
        building.replace(binary)
    return binary


def health_scripts(tmp_path: Path) -> dict[str, str]:
    made = CliRunner().invoke(app, ["init", str(tmp_path / "repo"), "--arm", "qwq=qwq_32b_preview"])
    assert made.exit_code == 0, made.output
    config = yaml.safe_load((tmp_path / "repo" / "argocd" / "health-checks.yaml").read_text())
    return {key.rsplit("_", 1)[1]: script for key, script in config["data"].items()}


def health(binary: Path, script: str, obj: dict[str, Any], tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "health.lua"
    path.write_text(script)
    done = subprocess.run([binary, path], input=json.dumps(obj), capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    result: dict[str, str] = json.loads(done.stdout)
    return result


def condition(type_: str, status: str, reason: str, message: str | None = None) -> dict[str, Any]:
    found = {"type": type_, "status": status, "reason": reason, "lastTransitionTime": NOW}
    return found | ({"message": message} if message is not None else {})


STATES: list[tuple[str, dict[str, Any] | None, dict[str, str]]] = [
    ("just applied", None, {"status": "Progressing", "message": "waiting for the cotlab operator"}),
    (
        "waiting for its dataset",
        {"phase": "Pending", "conditions": [
            condition("Ready", "False", "Waiting"),
            condition("Waiting", "True", Reason.DATASET_NOT_READY, 'tracedataset "traces" is not Ready')]},
        {"status": "Progressing", "message": 'DatasetNotReady: tracedataset "traces" is not Ready'},
    ),
    (
        "running",
        {"phase": "Running", "conditions": [
            condition("Ready", "False", "Running"), condition("Running", "True", Reason.POD_RUNNING, "step 12/60")]},
        {"status": "Progressing", "message": "step 12/60"},
    ),
    (
        "scored",
        {"phase": "Succeeded", "conditions": [
            condition("Running", "False", "Completed"), condition("Ready", "True", Reason.SUCCEEDED, "scored")]},
        {"status": "Healthy", "message": "scored"},
    ),
    (
        "failed, after a Ready that turned False",
        {"phase": "Failed", "conditions": [
            condition("Ready", "False", "Failed", "exit code 3"),
            condition("Failed", "True", Reason.BACKOFF_LIMIT_EXCEEDED, "exit code 3: bad trace at line 7")]},
        {"status": "Degraded", "message": "BackoffLimitExceeded: exit code 3: bad trace at line 7"},
    ),
    (
        "failed with no message",
        {"phase": "Failed", "conditions": [condition("Failed", "True", Reason.INVALID_INPUT)]},
        {"status": "Degraded", "message": "InvalidInput: "},
    ),
    (
        "preempted by Kueue",
        {"phase": "Waiting", "conditions": [
            condition("Waiting", "True", Reason.PREEMPTED, "Preempted to accommodate a higher priority Workload")]},
        {"status": "Progressing", "message": "Preempted: Preempted to accommodate a higher priority Workload"},
    ),
    (
        "suspended",
        {"phase": "Suspended", "conditions": [
            condition("Suspended", "True", Reason.SUSPENDED_BY_USER, "spec.suspend")]},
        {"status": "Suspended", "message": "spec.suspend"},
    ),
]  # fmt: skip


@pytest.mark.parametrize(("state", "status", "expected"), STATES, ids=[s[0] for s in STATES])
def test_argocd_shows_each_state_as_the_operator_means_it(
    argocd_health: Path, tmp_path: Path, state: str, status: dict[str, Any] | None, expected: dict[str, str]
) -> None:
    scripts = health_scripts(tmp_path)
    assert sorted(scripts) == ["EvalRun", "FineTuneRun", "TraceDataset"]
    for kind, script in scripts.items():
        obj: dict[str, Any] = {"apiVersion": "cotlab.dev/v1alpha1", "kind": kind, "metadata": {"name": "x"}}
        if status is not None:
            obj["status"] = status
        got = health(argocd_health, script, obj, tmp_path)
        assert got == expected, (kind, state)
        assert got["status"] in VALID


def test_the_vm_refuses_what_argocd_refuses(argocd_health: Path, tmp_path: Path) -> None:
    """The harness must be able to fail: Argo CD opens no string library for argocd-cm scripts."""
    path = tmp_path / "bad.lua"
    path.write_text('return {status = string.upper("healthy")}')
    done = subprocess.run([argocd_health, path], input="{}", capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "upper" in done.stderr
