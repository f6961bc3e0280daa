"""Shared test data: the example manifests and the invalid-manifest table (used by unit and cluster tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "manifests" / "examples"


def example_documents() -> list[tuple[str, dict[str, Any]]]:
    """(id, document) for every document in manifests/examples."""
    docs = []
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((f"{path.relative_to(EXAMPLES)}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return docs


def invalid_cases() -> list[dict[str, Any]]:
    """The invalid manifests every validator must reject, with the field each error must name."""
    cases: list[dict[str, Any]] = yaml.safe_load((REPO / "tests" / "data" / "invalid_manifests.yaml").read_text())
    return cases
