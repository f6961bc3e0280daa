"""Read and write artifacts by URI: fsspec for `file://`, `s3://`, `gs://`, `https://`, `hf://`, and two more.

- `pvc://<claim>/<path>` is a PersistentVolumeClaim the operator mounts at `/mnt/pvc/<claim>`
  (`COTLAB_PVC_ROOT` moves the root, for local runs and tests).
- `pkg://<package>/<path>` is a file shipped inside an installed Python package, found with
  `importlib.util.find_spec` without importing the package (the data wheels' code pulls heavy deps).

Plain paths are local files.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import fsspec

from cotlab.trainer.core.errors import InvalidSpecError

logger = logging.getLogger(__name__)

PVC_ROOT = "/mnt/pvc"
PVC_ROOT_ENV = "COTLAB_PVC_ROOT"


def package_dir(package: str) -> Path | None:
    """The directory of an installed top-level package, or None when it is not installed (never imports it)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def local_path(uri: str) -> Path | None:
    """The local filesystem path a URI names, or None for a remote URI."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return Path(uri)
    if scheme == "file":
        return Path(rest)
    if scheme in ("pvc", "pkg") and ".." in Path(rest).parts:
        # A claim or package root is a boundary: a spec value may not climb out of it.
        raise InvalidSpecError(f"{uri}: '..' is not allowed in a {scheme}:// path")
    if scheme == "pvc":
        claim, _, path = rest.partition("/")
        return Path(os.environ.get(PVC_ROOT_ENV, PVC_ROOT)) / claim / path
    if scheme == "pkg":
        package, _, path = rest.partition("/")
        root = package_dir(package)
        if root is None:
            raise FileNotFoundError(f"{uri}: Python package {package!r} is not installed")
        return root / path
    return None


def is_available(uri: str) -> bool:
    """Whether `uri` can be read: a local file that exists (an installed package's file), or any remote URI."""
    try:
        path = local_path(uri)
    except FileNotFoundError:
        return False
    return path is None or path.exists()


def join(uri: str, *parts: str) -> str:
    """`uri` with path components appended (URIs and plain paths alike)."""
    return "/".join([uri.rstrip("/"), *(p.strip("/") for p in parts)])


def _open(uri: str, mode: str) -> Any:
    path = local_path(uri)
    if path is not None:
        if "w" in mode or "a" in mode:
            path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, mode, encoding=None if "b" in mode else "utf-8")  # noqa: SIM115 - returned to caller
    return fsspec.open(uri, mode, encoding=None if "b" in mode else "utf-8").open()


def exists(uri: str) -> bool:
    """Whether a file exists at `uri`."""
    path = local_path(uri)
    if path is not None:
        return path.is_file()
    fs, fs_path = fsspec.core.url_to_fs(uri)
    return bool(fs.exists(fs_path))


def read_text(uri: str) -> str:
    """The whole file at `uri` as text."""
    with _open(uri, "r") as f:
        return str(f.read())


def iter_lines(uri: str) -> Iterator[str]:
    """The lines of a text file at `uri`, without their line endings; streamed, so large files are fine."""
    with _open(uri, "r") as f:
        for line in f:
            yield line.rstrip("\r\n")


def write_text(uri: str, text: str) -> None:
    """Write `text` to `uri`; local files are replaced atomically, so a reader never sees half a file."""
    path = local_path(uri)
    if path is None:
        with _open(uri, "w") as f:
            f.write(text)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def append_jsonl(uri: str, records: Iterable[dict[str, Any]]) -> None:
    """Append one JSON object per line; local files are flushed and fsynced so a kill loses no finished line.

    Object stores cannot append, so a remote file is read and rewritten whole: fine for one pod's
    per-sample records, but prefer a `pvc://` or local output for very large runs.
    """
    text = "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in records)
    if not text:
        return
    path = local_path(uri)
    if path is None:
        old = read_text(uri) if exists(uri) else ""
        if old and not old.endswith("\n"):
            old += "\n"
        with _open(uri, "w") as f:
            f.write(old + text)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    if _ends_mid_line(path):
        text = "\n" + text  # a kill mid-write left half a line: never glue a new record onto it
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _ends_mid_line(path: Path) -> bool:
    if not path.is_file() or path.stat().st_size == 0:
        return False
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) != b"\n"
