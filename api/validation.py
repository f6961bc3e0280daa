"""Validate manifests against the models without a cluster: what `cotctl validate` and the runner use.

Each error names the document (kind/name), the field path in camelCase (as the API server names it) and
what is wrong, so a user can fix a GitOps repo without applying anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from .kinds import API_VERSION
from .resources import KINDS_BY_NAME, Resource


@dataclass(frozen=True)
class FieldError:
    """One problem in one document."""

    source: str  # file name and document index, e.g. "examples/study.yaml#2"
    document: str  # "FineTuneRun/qwen32b-qwq" or "<unknown kind>"
    path: str  # "spec.training.learningRate"
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.source} {self.document}: {where}{self.message}"


def _document_name(doc: dict[str, Any]) -> str:
    kind = doc.get("kind") or "<no kind>"
    meta = doc.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    return f"{kind}/{name or '<no name>'}"


def format_loc(loc: Iterable[int | str]) -> str:
    """A pydantic error location as a field path: ("spec", "benchmarks", 0, "name") -> spec.benchmarks[0].name."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.startswith("function-") or part in {"tagged-union", "literal"}:
            continue
        else:
            path += f".{part}" if path else part
    return path


def _describe(error: dict[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown field"
    if error["type"] == "missing":
        return "required field is missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    if "input" in error and error["type"] not in {"model_type", "dict_type"}:
        value = error["input"]
        if not isinstance(value, dict | list):
            return f"{message}, got {value!r}"
    return message


def parse_resource(doc: dict[str, Any]) -> Resource:
    """The typed resource for a manifest; raises pydantic.ValidationError or ValueError for a wrong kind."""
    kind = doc.get("kind")
    if kind not in KINDS_BY_NAME:
        raise ValueError(f"kind: unknown kind {kind!r}; valid kinds: {', '.join(KINDS_BY_NAME)}")
    if doc.get("apiVersion") != API_VERSION:
        raise ValueError(f"apiVersion: must be {API_VERSION}, got {doc.get('apiVersion')!r}")
    return KINDS_BY_NAME[kind].model.model_validate(doc)


def validate_document(doc: Any, source: str) -> list[FieldError]:
    """Every error in one parsed YAML document (empty when it is valid)."""
    if not isinstance(doc, dict):
        return [FieldError(source, "<not an object>", "", f"expected a mapping, got {type(doc).__name__}")]
    name = _document_name(doc)
    try:
        parse_resource(doc)
    except ValidationError as exc:
        return [FieldError(source, name, format_loc(e["loc"]), _describe(dict(e))) for e in exc.errors()]
    except ValueError as exc:
        path, _, message = str(exc).partition(": ")
        return [FieldError(source, name, path, message)]
    return []
