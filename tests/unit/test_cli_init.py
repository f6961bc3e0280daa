"""`cotctl init`: a repository whose manifests validate, render with kustomize and carry the experiment labels."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from cotlab.cli.main import app

runner = CliRunner()
KUBECTL = Path(sys.executable).parent / "kubectl"


def test_repository_validates_and_renders(tmp_path: Path) -> None:
    repo = tmp_path / "study"
    made = runner.invoke(
        app, ["init", str(repo), "-n", "lab", "--arm", "qwq=qwq_32b_preview", "--arm", "h1=human_stage1"]
    )
    assert made.exit_code == 0, made.output
    assert sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file()) == [
        ".github/workflows/validate.yml", "README.md", "argocd/application.yaml", "argocd/health-checks.yaml",
        "ci/diff-access.yaml", "experiment/baseline.yaml", "experiment/h1.yaml", "experiment/qwq.yaml",
        "kustomization.yaml",
    ]  # fmt: skip
    checked = runner.invoke(app, ["validate", "-f", str(repo / "experiment"), "-o", "json"])
    assert checked.exit_code == 0 and json.loads(checked.stdout)["valid"] is True

    rendered = subprocess.run([str(KUBECTL), "kustomize", str(repo)], capture_output=True, text=True, check=True)
    docs = list(yaml.safe_load_all(rendered.stdout))
    assert sorted((d["kind"], d["metadata"]["name"]) for d in docs) == sorted([
        ("EvalRun", "study-base-eval"),
        ("TraceDataset", "study-qwq-traces"), ("FineTuneRun", "study-qwq"), ("EvalRun", "study-qwq-eval"),
        ("TraceDataset", "study-h1-traces"), ("FineTuneRun", "study-h1"), ("EvalRun", "study-h1-eval"),
    ])  # fmt: skip
    assert {d["metadata"]["namespace"] for d in docs} == {"lab"}
    assert {d["metadata"]["labels"]["cotlab.dev/experiment"] for d in docs} == {"study"}
    arms = {d["metadata"]["name"]: d["metadata"]["labels"]["cotlab.dev/arm"] for d in docs}
    assert arms["study-base-eval"] == "base" and arms["study-h1"] == "h1"
    h1 = next(d for d in docs if d["metadata"]["name"] == "study-h1-traces")
    assert h1["spec"]["source"]["huggingface"]["where"] == {"solution_type": ["human_stage1"]}
    tune = next(d for d in docs if d["metadata"]["name"] == "study-h1")
    assert tune["spec"]["datasetRef"]["name"] == "study-h1-traces"

    readme = (repo / "README.md").read_text()
    assert "cotctl compare -n lab -l cotlab.dev/experiment=study --rows label:cotlab.dev/arm --baseline base" in readme
    assert "cotctl diff -k . -n lab " in readme and "cotctl validate -k . " in readme


def test_argocd_health_checks_cover_the_three_kinds(tmp_path: Path) -> None:
    runner.invoke(app, ["init", str(tmp_path / "x")])
    config = yaml.safe_load((tmp_path / "x" / "argocd" / "health-checks.yaml").read_text())
    keys = sorted(config["data"])
    assert keys == [
        f"resource.customizations.health.cotlab.dev_{k}" for k in ("EvalRun", "FineTuneRun", "TraceDataset")
    ]
    lua = config["data"][keys[0]]
    for status, condition in (("Degraded", "Failed"), ("Healthy", "Ready"), ("Suspended", "Suspended")):
        assert f'hs.status = "{status}"' in lua and f'found["{condition}"]' in lua
    app_doc = yaml.safe_load((tmp_path / "x" / "argocd" / "application.yaml").read_text())
    assert app_doc["spec"]["source"]["path"] == "." and app_doc["metadata"]["name"] == "cotlab-x"
    # Runs are immutable: never Replace (refused like any update) or Force (deletes a finished run), never prune
    # on its own; the README says why, option by option.
    assert app_doc["spec"]["syncPolicy"] == {
        "automated": {"prune": False, "selfHeal": False},
        "syncOptions": ["ServerSideApply=true", "FailOnSharedResource=true"],
    }
    readme = (tmp_path / "x" / "README.md").read_text()
    for option in ("No `Replace=true`", "`ServerSideApply=true`", "No automatic prune", "`FailOnSharedResource=true`"):
        assert f"- **{option}" in readme


def test_refuses_a_folder_that_is_not_empty_and_bad_arms(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    busy = runner.invoke(app, ["init", str(tmp_path)])
    assert busy.exit_code == 2 and "is not empty" in busy.stderr and "--force" in busy.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    arm = runner.invoke(app, ["init", str(tmp_path / "new"), "--arm", "qwq"])
    assert arm.exit_code == 2 and "--arm: expected NAME=SOLUTION_TYPE" in arm.stderr
    base = runner.invoke(app, ["init", str(tmp_path / "new"), "--arm", "base=human_stage1"])
    assert base.exit_code == 2 and "not 'base'" in base.stderr
