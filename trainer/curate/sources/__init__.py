"""Trace sources: one loader module per TraceDataset source kind, registered in one mapping."""

from __future__ import annotations

from collections.abc import Iterator

from cotlab.api.tracedataset import SOURCE_KINDS, FieldMapping, TraceDatasetSpec
from cotlab.trainer.curate.sources import configmap, generate, huggingface, uri
from cotlab.trainer.curate.sources.base import Loader, Row, SourceContext, TeacherLoader

# Keyed by the one-of member's wire name (`cotlab.api.tracedataset.SOURCE_KINDS`); a test checks none is missing.
LOADERS: dict[str, Loader] = {
    "uri": uri.load,
    "huggingface": huggingface.load,
    "configMap": configmap.load,
    "generate": generate.load,
}


def source_kind(spec: TraceDatasetSpec) -> str:
    """The one-of member `spec.source` sets (the validator guarantees exactly one)."""
    wire = spec.source.to_wire()
    return next(kind for kind in SOURCE_KINDS if kind in wire)


def load_rows(spec: TraceDatasetSpec, context: SourceContext) -> Iterator[Row]:
    """The raw rows of the spec's source, each with where it came from."""
    return LOADERS[source_kind(spec)](spec, context)


def field_mapping(spec: TraceDatasetSpec) -> FieldMapping:
    """How rows map to trace fields: the spec's for files, the loader's own for generated rows."""
    return generate.FIELDS if spec.source.generate is not None else spec.fields


__all__ = ["LOADERS", "Loader", "Row", "SourceContext", "TeacherLoader", "field_mapping", "load_rows", "source_kind"]
