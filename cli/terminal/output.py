"""The one output sink: data on stdout as a table, CSV, Markdown, JSON, YAML or names; messages on stderr."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Sequence
from typing import Any

import yaml
from rich.cells import cell_len
from rich.console import Console
from rich.text import Text

# When stdout is a pipe or a file the table is data, not decoration: wide enough that no cell is cut.
stdout = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 1000)
stderr = Console(stderr=True, soft_wrap=True)


def table_of(rows: Sequence[dict[str, Any]], *, title: str | None = None) -> Text:
    """Rows (flat dicts, same keys) as kubectl prints them: upper-case headers, columns two spaces apart.

    Plain text, not a rich Table: it is written as is (cells hold user data such as "[rank0]: ..." that markup
    would eat) and it stays fast for a thousand rows, where rich's layout engine takes seconds."""
    columns = list(rows[0]) if rows else []
    cells = [[c.upper() for c in columns]]
    cells += [["" if row[c] is None else str(row[c]).replace("\n", " ") for c in columns] for row in rows]
    widths = [max(cell_len(line[i]) for line in cells) for i in range(len(columns))]
    lines = []
    for line in cells:
        padded = [value + " " * (width - cell_len(value)) for value, width in zip(line, widths, strict=True)]
        lines.append("   ".join(padded).rstrip())
    text = Text("\n".join(lines))
    if columns:
        text.stylize("bold", 0, len(lines[0]))
    if title:
        text = Text(title + "\n", style="bold") + text
    return text


def csv_of(rows: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    return buffer.getvalue()


def markdown_of(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return ""
    columns = list(rows[0])

    def cell(value: Any) -> str:
        return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def render(
    data: Any,
    rows: Sequence[dict[str, Any]],
    fmt: str,
    *,
    title: str | None = None,
    names: Sequence[str] = (),
) -> None:
    """Print `data` as JSON/YAML, `rows` as a table (table, wide), CSV or Markdown, or `names` one per line."""
    fmt = str(fmt)
    if fmt == "json":
        stdout.out(json.dumps(data, indent=2, sort_keys=False), highlight=False)
    elif fmt == "yaml":
        stdout.out(yaml.safe_dump(data, sort_keys=False).rstrip(), highlight=False)
    elif fmt == "name":
        for name in names:
            stdout.out(name, highlight=False)
    elif fmt == "csv":
        stdout.out(csv_of(rows), highlight=False, end="")
    elif fmt == "markdown":
        if title:
            stdout.out(f"**{title}**\n", highlight=False)
        stdout.out(markdown_of(rows), highlight=False, end="")
    elif rows:
        stdout.print(table_of(rows, title=title))


def error(message: str, hint: str | None = None) -> None:
    """One line on stderr (plus an optional next step)."""
    stderr.print(Text("Error: ", style="red") + Text(message), highlight=False)
    if hint:
        stderr.print(Text(f"  {hint}"), highlight=False)


def note(message: str) -> None:
    """A line for the person at the terminal (never data): progress, what was skipped and why."""
    stderr.print(Text(message), highlight=False)
