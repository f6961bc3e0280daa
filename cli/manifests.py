"""Reading manifests: files, directories and stdin, multi-document YAML, with the document's origin."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


class ManifestError(Exception):
    """A file that cannot be read or parsed; the message names the file and line."""


def _expand(path: Path) -> list[Path]:
    if str(path) == "-":
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix in MANIFEST_SUFFIXES and p.is_file())
    if not path.exists():
        raise ManifestError(f"{path}: no such file or directory")
    return [path]


def read_documents(paths: list[Path]) -> Iterator[tuple[str, Any]]:
    """(source, document) for every YAML document in `paths`; source is "file#index" (1-based)."""
    for path in [p for given in paths for p in _expand(given)]:
        name = "<stdin>" if str(path) == "-" else str(path)
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
        try:
            documents = list(yaml.safe_load_all(text))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark is not None else ""
            raise ManifestError(f"{name}{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from exc
        for index, doc in enumerate(documents, start=1):
            yield f"{name}#{index}", doc
