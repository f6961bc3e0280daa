"""Read a JSONL file by URI as (where, row) pairs, naming the line of anything malformed."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from cotlab.trainer.core import storage
from cotlab.trainer.core.errors import InvalidInputError

Row = tuple[str, Mapping[str, Any]]
"""(where, record): where names the file and line for error messages."""


def numbered_rows(lines: Iterable[str], label: str) -> Iterator[Row]:
    """One (where, record) per non-blank line of `lines`; `where` is "LABEL line N"."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{label} line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(row, dict):
            raise InvalidInputError(f"{where}: expected a JSON object, got {type(row).__name__}")
        yield where, row


def jsonl_rows(uri: str, *, name: str | None = None) -> Iterator[Row]:
    """One (where, record) per non-blank line; `where` is "NAME line N" (NAME defaults to the URI)."""
    label = name or uri
    try:
        yield from numbered_rows(storage.iter_lines(uri), label)
    except FileNotFoundError as exc:
        raise InvalidInputError(f"{label}: file not found ({exc})") from None
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{label}: not UTF-8 text ({exc.reason})") from None
