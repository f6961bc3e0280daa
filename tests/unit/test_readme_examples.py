"""The README's resource examples are excerpts of manifests that exist: every field they show is the manifest's."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, example_documents

BLOCKS = re.findall(r"```yaml\n(.*?)```", (REPO / "README.md").read_text(encoding="utf-8"), flags=re.DOTALL)
SHOWN = [doc for block in BLOCKS for doc in yaml.safe_load_all(block) if doc and "apiVersion" in doc]
MANIFESTS = {(doc["kind"], doc["metadata"]["name"]): (where, doc) for where, doc in example_documents()}


def mismatch(shown: Any, manifest: Any, path: str) -> str | None:
    """The first field of `shown` that `manifest` does not have with the same value (maps may leave fields out)."""
    if isinstance(shown, dict) and isinstance(manifest, dict):
        for key, value in shown.items():
            if key not in manifest:
                return f"{path}.{key}: not in the manifest"
            found = mismatch(value, manifest[key], f"{path}.{key}")
            if found:
                return found
        return None
    return None if shown == manifest else f"{path}: README {shown!r}, manifest {manifest!r}"


def test_the_readme_shows_resources() -> None:
    assert {doc["kind"] for doc in SHOWN} == {"TraceDataset", "FineTuneRun", "EvalRun"}


@pytest.mark.parametrize("doc", SHOWN, ids=[f"{d['kind']}/{d['metadata']['name']}" for d in SHOWN])
def test_every_readme_example_is_an_excerpt_of_a_manifest(doc: dict[str, Any]) -> None:
    key = (doc["kind"], doc["metadata"]["name"])
    assert key in MANIFESTS, f"{key[0]}/{key[1]} is in the README but in no manifest under manifests/examples"
    where, manifest = MANIFESTS[key]
    assert mismatch(doc, manifest, where) is None
