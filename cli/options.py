"""Options shared by several commands, defined once as Annotated aliases."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


OutputOpt = Annotated[
    OutputFormat, typer.Option("--output", "-o", help="Output format: table, json or yaml.", case_sensitive=False)
]
FilesOpt = Annotated[
    list[Path],
    typer.Option(
        "--filename",
        "-f",
        help="Manifest file or directory (multi-document YAML); '-' reads standard input. Repeatable.",
    ),
]
