"""Reading manifests: files, directories and stdin, multi-document YAML, with the document's origin."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from cotlab.api.kinds import GROUP, KIND_NAMES_BY_KIND

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


class ManifestLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading numbers as kubectl does: YAML 1.1 makes `1e-05` (no dot) a string, while
    kubectl's parser (sigs.k8s.io/yaml) and kustomize's output take it as a float. Without this a learning rate
    written `1e-5`, or any float kustomize prints, would reach the API server as a string."""


ManifestLoader.add_implicit_resolver(  # PyYAML copies the resolver table for the subclass: SafeLoader is untouched
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_all(text: str) -> list[Any]:
    """Every document of a YAML stream, numbers read as kubectl reads them."""
    return list(yaml.load_all(text, Loader=ManifestLoader))  # noqa: S506 - a SafeLoader subclass


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
            documents = load_all(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark is not None else ""
            raise ManifestError(f"{name}{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from exc
        for index, doc in enumerate(documents, start=1):
            yield f"{name}#{index}", doc


def is_cotlab_document(doc: Any) -> bool:
    """Whether a document is meant as a cotlab resource: one of cotlab's kinds, or anything in its API group.

    A cotlab kind under a mistyped apiVersion (`cotlab.dev/v1`) still counts, so the typo is reported rather than
    the document skipped; anything that is not a mapping counts too, since no tool could apply it."""
    if not isinstance(doc, dict):
        return True
    api_version = doc.get("apiVersion")
    group = api_version.split("/")[0] if isinstance(api_version, str) and "/" in api_version else None
    return doc.get("kind") in KIND_NAMES_BY_KIND or group == GROUP


def describe_document(doc: dict[str, Any]) -> str:
    """`Kind/name` for a document of any kind ("<no kind>" for a YAML file that is not a Kubernetes object)."""
    meta = doc.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    return f"{doc.get('kind') or '<no kind>'}/{name or '<no name>'}"


def skipped_summary(skipped: list[tuple[str, str]], advice: str) -> str:
    """The one line that says which (source, "Kind/name") documents were left alone, and what to do about it."""
    kinds = ", ".join(sorted({resource.split("/")[0] for _, resource in skipped}))
    what = f"{len(skipped)} documents that are not cotlab resources"
    if len(skipped) == 1:
        what = "1 document that is not a cotlab resource"
    return f"skipped {what} ({kinds}): {advice}"
