"""The one output sink: data on stdout as a table, JSON or YAML; messages on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .options import OutputFormat

# When stdout is a pipe or a file the table is data, not decoration: wide enough that no cell is cut.
stdout = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 1000)
stderr = Console(stderr=True, soft_wrap=True)


def render(data: Any, rows: Sequence[dict[str, Any]], fmt: OutputFormat, *, title: str | None = None) -> None:
    """Print `data` as JSON/YAML, or `rows` (flat dicts, same keys) as a table."""
    if fmt is OutputFormat.json:
        stdout.out(json.dumps(data, indent=2, sort_keys=False), highlight=False)
    elif fmt is OutputFormat.yaml:
        stdout.out(yaml.safe_dump(data, sort_keys=False).rstrip(), highlight=False)
    else:
        table = Table(title=title, box=None, header_style="bold")
        columns = list(rows[0]) if rows else []
        for column in columns:
            table.add_column(column.upper())
        for row in rows:
            # Text, not markup: cells hold user data ("[rank0]: ...") that rich would otherwise interpret.
            table.add_row(*(Text("" if row[c] is None else str(row[c])) for c in columns))
        if rows:
            stdout.print(table)


def error(message: str, hint: str | None = None) -> None:
    """One line on stderr (plus an optional next step)."""
    stderr.print(Text("Error: ", style="red") + Text(message), highlight=False)
    if hint:
        stderr.print(Text(f"  {hint}"), highlight=False)
