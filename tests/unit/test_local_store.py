"""The local store keeps resources exactly as given: an explicit null survives a save and a load."""

from __future__ import annotations

from pathlib import Path

from cotlab.api.validation import parse_resource
from cotlab.cli.local.store import LocalStore
from tests.conftest import example_documents


def test_every_example_round_trips_through_the_store(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    for _, doc in example_documents():
        resource = parse_resource(doc)
        store.save(resource)
        loaded = store.load(resource.kind, "default", resource.metadata.name)
        assert loaded is not None and loaded.spec == resource.spec, resource.metadata.name


def test_null_answer_column_is_kept(tmp_path: Path) -> None:
    doc = next(d for name, d in example_documents() if name.endswith("TraceDataset/quickstart-traces"))
    doc = {**doc, "spec": {**doc["spec"], "fields": {"problem": "problem", "solution": "solution", "answer": None}}}
    store = LocalStore(tmp_path)
    store.save(parse_resource(doc))
    loaded = store.load("TraceDataset", "default", "quickstart-traces")
    assert loaded is not None and loaded.spec.fields.answer is None  # type: ignore[union-attr]
    assert [r.metadata.name for r in store.all()] == ["quickstart-traces"]
