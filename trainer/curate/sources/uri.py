"""Traces from a JSONL or parquet file at a URI (file://, pkg://, pvc://, s3://, https://, ...)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import fsspec

from cotlab.api.tracedataset import TraceDatasetSpec
from cotlab.trainer.core import storage
from cotlab.trainer.core.errors import InvalidInputError
from cotlab.trainer.core.jsonl import jsonl_rows
from cotlab.trainer.curate.sources.base import Row, SourceContext

PARQUET_BATCH_ROWS = 1024
"""Rows read from a parquet file at a time: bounded memory whatever the file's size."""


def load(spec: TraceDatasetSpec, context: SourceContext) -> Iterator[Row]:
    """The rows of `spec.source.uri`: parquet by its suffix, JSONL otherwise."""
    uri = spec.source.uri
    assert uri is not None  # the one-of validator guarantees it for this loader
    if uri.split("?", 1)[0].endswith(".parquet"):
        return parquet_rows(uri)
    return jsonl_rows(uri)


def parquet_rows(uri: str) -> Iterator[Row]:
    """One (where, record) per row; `where` is "URI row N"."""
    # Imported here: only parquet sources need pyarrow (it ships no type stubs).
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    try:
        with _open_binary(uri) as f:
            number = 0
            for batch in pq.ParquetFile(f).iter_batches(batch_size=PARQUET_BATCH_ROWS):
                for row in batch.to_pylist():
                    number += 1
                    yield f"{uri} row {number}", row
    except FileNotFoundError as exc:
        raise InvalidInputError(f"{uri}: file not found ({exc})") from None
    except (OSError, pa.ArrowException) as exc:  # ArrowInvalid: the bytes are not parquet
        raise InvalidInputError(f"{uri}: not a readable parquet file ({exc})") from None


def _open_binary(uri: str) -> Any:
    path = storage.local_path(uri)
    if path is not None:
        return open(path, "rb")  # noqa: SIM115 - used as a context manager by the caller
    return fsspec.open(uri, "rb").open()
