"""images/Dockerfile against pyproject.toml: the image copies exactly the folders the package installs (and the
build context lets exactly those through), and each image's requirements are its extra's, nested extras included."""

from __future__ import annotations

import json
import re
import tomllib
from types import ModuleType

import pytest

from tests.conftest import REPO, load_script

DOCKERFILE = (REPO / "images" / "Dockerfile").read_text()
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def image_requirements() -> ModuleType:
    """images/requirements.py, which is a script of the build stage, not part of the package."""
    return load_script("images/requirements.py")


def copied_source_folders() -> set[str]:
    """The folders the `package` stage copies into /src (COPY <folder> /src/<folder>)."""
    stage = DOCKERFILE.split("AS package\n", 1)[1].split("\nFROM ", 1)[0]
    return {src for src, dest in re.findall(r"^COPY (\S+) /src/(\S+)$", stage, re.MULTILINE) if src == dest}


def test_the_image_copies_the_folders_the_package_installs_and_no_other() -> None:
    package_dirs = PYPROJECT["tool"]["setuptools"]["package-dir"]
    assert copied_source_folders() == set(package_dirs.values())
    # Every package pyproject lists lives in one of them, so nothing it installs is missing from the image.
    for package in PYPROJECT["tool"]["setuptools"]["packages"]:
        top = ".".join(package.split(".")[:2])
        assert top in package_dirs, f"{package}: its folder is not mapped, so the image would not copy it"


def test_the_build_context_lets_through_exactly_what_the_dockerfile_copies() -> None:
    allowed = {
        line[1:].rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines() if line.startswith("!")
    }
    copied = {
        path for line in re.findall(r"^COPY (?!--from)(.+)$", DOCKERFILE, re.MULTILINE) for path in line.split()[:-1]
    }
    assert allowed == copied


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("operator", {"kopf", "kubernetes", "prometheus-client"}),
        ("train", {"torch", "transformers", "peft", "accelerate", "math-verify"}),  # math-verify via cotlab[grade]
        ("eval", {"vllm", "math-verify"}),
    ],
    ids=["operator", "trainer", "evaluator"],
)
def test_each_images_requirements_are_its_extra_with_nested_extras_expanded(extra: str, expected: set[str]) -> None:
    found = image_requirements().requirements(PYPROJECT, extra)
    names = {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0] for r in found}
    assert expected <= names and "cotlab" not in names
    assert set(PYPROJECT["project"]["dependencies"]) <= set(found)  # the base dependencies in every image
    assert len(found) == len(set(found))


def test_the_evaluator_was_checked_with_what_it_is_built_from_now() -> None:
    """The evaluator is too big to build in every CI run; scripts/check-evaluator-image.sh builds and smoke-tests it
    and records the digest of its inputs. A change to the Dockerfile, the build scripts or the `eval` requirements
    without a new check fails here."""
    record = json.loads((REPO / "images" / "evaluator-check.json").read_text())
    assert record["inputs"] == image_requirements().evaluator_inputs(PYPROJECT), (
        "the evaluator image's inputs changed since its last check: run `bash scripts/check-evaluator-image.sh` "
        "and commit images/evaluator-check.json"
    )
    assert record["vllm"] and record["bytes"] > 0 and len(record["smokeTest"]) == 3
