"""The CI workflow `cotctl init` writes: actionlint accepts it (and catches the mistakes it is there to catch), and
its validate step's own command, run as the runner would run it, passes on the scaffold and fails on a bad
manifest. The diff step runs against a real API server in tests/cluster/test_cli_diff.py.

actionlint runs without shellcheck and pyflakes (not part of cotlab's set-up), so every check of its own runs:
syntax, expressions and which contexts each key may use, the inputs of known actions, outdated runners.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from cotlab.cli.main import app
from tests.conftest import invalid_cases

runner = CliRunner()
WORKFLOW = Path(".github") / "workflows" / "validate.yml"


def lint(actionlint: Path, path: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        [str(actionlint), "-shellcheck=", "-pyflakes=", "-format", "{{json .}}", str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr  # 1: problems found; anything else: actionlint itself failed
    found: list[dict[str, Any]] = json.loads(done.stdout)
    assert (done.returncode == 1) == bool(found)
    return found


def scaffold(tmp_path: Path) -> Path:
    repo = tmp_path / "x"
    made = runner.invoke(app, ["init", str(repo)])
    assert made.exit_code == 0, made.output
    return repo


def test_the_scaffolds_workflow_passes_actionlint(actionlint: Path, tmp_path: Path) -> None:
    assert lint(actionlint, scaffold(tmp_path) / WORKFLOW) == []


BROKEN = [
    ("a secret in a step's if", "if: env.KUBECONFIG_DATA != ''", "if: secrets.COTLAB_KUBECONFIG != ''",
     "expression", 'context "secrets" is not allowed here'),
    ("a misspelt context", "${{ secrets.COTLAB_KUBECONFIG }}", "${{ secret.COTLAB_KUBECONFIG }}",
     "expression", 'undefined variable "secret"'),
    ("an input the action does not have", "python-version:", "python_version:",
     "action", 'input "python_version" is not defined in action "actions/setup-python@v6"'),
    ("an action too old to run", "actions/checkout@v6", "actions/checkout@v1",
     "action", 'the runner of "actions/checkout@v1" action is too old to run on GitHub Actions'),
    ("no runner", "    runs-on: ubuntu-latest\n", "",
     "syntax-check", '"runs-on" section is missing in job "validate"'),
]  # fmt: skip


@pytest.mark.parametrize(("case", "old", "new", "kind", "message"), BROKEN, ids=[b[0] for b in BROKEN])
def test_actionlint_catches_a_broken_workflow(
    actionlint: Path, tmp_path: Path, case: str, old: str, new: str, kind: str, message: str
) -> None:
    path = scaffold(tmp_path) / WORKFLOW
    text = path.read_text()
    assert text.count(old) == 1, case
    path.write_text(text.replace(old, new))
    found = lint(actionlint, path)
    assert [(f["kind"], message in f["message"]) for f in found] == [(kind, True)], found


def step(repo: Path, step_id: str) -> dict[str, Any]:
    workflow = yaml.safe_load((repo / WORKFLOW).read_text())
    found: dict[str, Any] = next(s for s in workflow["jobs"]["validate"]["steps"] if s.get("id") == step_id)
    return found


def run_step(repo: Path, script: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A `run:` script as the runner runs it (bash -e, in the checkout), with this environment's cotctl."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-e", "-c", script],
        cwd=repo, env=os.environ | {"PATH": path} | (env or {}), capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_validate_step_passes_on_the_scaffold_and_fails_on_a_bad_manifest(tmp_path: Path) -> None:
    repo = scaffold(tmp_path)
    validate = step(repo, "validate")
    assert validate["run"] == "cotctl validate -k ."
    passed = run_step(repo, validate["run"])
    assert passed.returncode == 0, passed.stderr
    assert passed.stdout.count(" True ") == 7

    case = invalid_cases()[1]  # a negative learning rate
    (repo / "experiment" / "lr.yaml").write_text(yaml.safe_dump(case["manifest"]))
    kustomization = yaml.safe_load((repo / "kustomization.yaml").read_text())
    (repo / "kustomization.yaml").write_text(yaml.safe_dump(kustomization | {
        "resources": [*kustomization["resources"], "experiment/lr.yaml"]}))  # fmt: skip
    failed = run_step(repo, validate["run"])
    assert failed.returncode == 1
    assert "experiment/lr.yaml FineTuneRun/negative-lr: spec.training.learningRate: Input should be greater than 0" in (
        failed.stderr
    )
