"""Traces from a Hugging Face dataset (or a local dataset directory), filtered by `where`."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

from cotlab.api.podcontract import HF_TOKEN_ENV
from cotlab.api.tracedataset import HuggingFaceSource, TraceDatasetSpec
from cotlab.trainer.core.errors import InvalidSpecError
from cotlab.trainer.curate.sources.base import Row, SourceContext

logger = logging.getLogger(__name__)


def load(spec: TraceDatasetSpec, context: SourceContext) -> Iterator[Row]:
    """The split's rows that pass `where`; `where` in errors is "REPO@REVISION split S row N" (N before filtering)."""
    source = spec.source.huggingface
    assert source is not None  # the one-of validator guarantees it for this loader
    from datasets import load_dataset  # imported here: only hub sources need it, and it is slow to import
    from datasets.exceptions import DatasetNotFoundError

    try:
        dataset = load_dataset(
            source.repo,
            source.config,
            split=source.split,
            revision=source.revision,
            data_files=list(source.data_files) or None,
            token=os.environ.get(HF_TOKEN_ENV),  # the pod gets it from tokenSecretRef
        )
    except DatasetNotFoundError as exc:
        raise InvalidSpecError(f"spec.source.huggingface.repo: {exc}") from None
    _check_where_columns(source, list(dataset.column_names))
    label = f"{source.repo}@{source.revision} split {source.split}"
    kept = 0
    for number, row in enumerate(dataset, start=1):
        if matches(row, source.where):
            kept += 1
            yield f"{label} row {number}", row
    logger.info("read hub dataset", extra={"repo": source.repo, "rows": len(dataset), "kept": kept})


def matches(row: Mapping[str, Any], where: Mapping[str, list[str]]) -> bool:
    """Whether every `where` column of `row` equals one of its values (compared as text: YAML says `5`, a row 5)."""
    return all(str(row.get(column)) in values for column, values in where.items())


def _check_where_columns(source: HuggingFaceSource, columns: list[str]) -> None:
    missing = sorted(set(source.where) - set(columns))
    if missing:
        raise InvalidSpecError(
            f"spec.source.huggingface.where: no column {', '.join(map(repr, missing))} in {source.repo};"
            f" columns: {', '.join(columns)}"
        )
