"""The GitHub workflows, which CI cannot run: actionlint (the `actionlint` fixture of tests/conftest.py) keeps
them valid and catches a broken one, and the release workflow builds and pins exactly the images the Dockerfile
defines."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
RELEASE = REPO / ".github" / "workflows" / "release.yml"


def lint(actionlint: Path, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(actionlint), "-no-color", str(path)], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=[w.name for w in WORKFLOWS])
def test_the_workflows_pass_actionlint(actionlint: Path, workflow: Path) -> None:
    done = lint(actionlint, workflow)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("good", "bad", "complaint"),
    [
        ("needs: images", "needs: image", "needs"),  # a job that does not exist
        ("target: ${{ matrix.target }}", "target: ${{ matrix.targets }}", "matrix"),  # a matrix key that is not there
        ("steps.build.outputs.digest", "steps.built.outputs.digest", "steps"),  # a step id that does not exist
    ],
    ids=["unknown-job", "unknown-matrix-key", "unknown-step"],
)
def test_actionlint_catches_a_broken_release_workflow(
    actionlint: Path, tmp_path: Path, good: str, bad: str, complaint: str
) -> None:
    text = RELEASE.read_text()
    assert good in text
    broken = tmp_path / ".github" / "workflows" / "release.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(text.replace(good, bad, 1))
    done = lint(actionlint, broken)
    assert done.returncode != 0 and complaint in done.stdout, done.stdout


def test_the_release_builds_every_image_for_both_platforms_and_pins_each() -> None:
    workflow = yaml.safe_load(RELEASE.read_text())
    targets = set(re.findall(r"^FROM runtime AS (\w+)$", (REPO / "images" / "Dockerfile").read_text(), re.MULTILINE))
    images = workflow["jobs"]["images"]
    assert set(images["strategy"]["matrix"]["target"]) == targets == {"operator", "trainer", "evaluator"}
    build = next(s for s in images["steps"] if s.get("id") == "build")["with"]
    assert build["file"] == "images/Dockerfile" and build["target"] == "${{ matrix.target }}"
    assert set(build["platforms"].split(",")) == {"linux/amd64", "linux/arm64"}
    assert build["sbom"] is True and build["provenance"].startswith("mode=")
    pin = next(
        s for s in workflow["jobs"]["install-manifests"]["steps"] if "kustomize edit set image" in s.get("run", "")
    )
    for target in targets:
        assert f"ghcr.io/cotlab/{target}=" in pin["run"]
