"""Read and write artifacts by URI: fsspec for `file://`, `s3://`, `gs://`, `https://`, `hf://`, and two more.

- `pvc://<claim>/<path>` is a PersistentVolumeClaim the operator mounts at `/mnt/pvc/<claim>`
  (`COTLAB_PVC_ROOT` moves the root, for local runs and tests).
- `pkg://<package>/<path>` is a file shipped inside an installed Python package, found with
  `importlib.util.find_spec` without importing the package (the data wheels' code pulls heavy deps).

Plain paths are local files. Every local URI stays inside its root: a claim's mount, a package's directory, and
for `file://` and plain paths the root the operator sets in `COTLAB_FILE_ROOT` (unset: anywhere, as on a
workstation). The check is on the path as written, after `.` and `..` are folded and before any symlink is
followed: a spec value can name no file outside, whatever the volume holds.
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
FILE_ROOT_ENV = "COTLAB_FILE_ROOT"
"""When set (by the operator, in pods), `file://` URIs and plain paths must name files under it."""


def package_dir(package: str) -> Path | None:
    """The directory of an installed top-level package, or None when it is not installed (never imports it)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _inside(root: Path, relative: str, uri: str, what: str) -> Path:
    """`root / relative`, refused when `relative` is absolute or climbs out of `root` (pathlib would let
    `root / "/etc/passwd"` be `/etc/passwd`)."""
    if relative.startswith("/") or ".." in relative.split("/"):
        raise InvalidSpecError(
            f"{uri}: the path must stay inside the {what} ('..' is not allowed, nor an absolute path)"
        )
    path = Path(os.path.normpath(root / relative)) if relative else root
    if not path.is_relative_to(root):
        raise InvalidSpecError(f"{uri}: the path must stay inside the {what}")
    return path


def _within_file_root(uri: str, path: Path) -> Path:
    root = os.environ.get(FILE_ROOT_ENV)
    if not root:
        return path
    normalised = Path(os.path.normpath(os.path.abspath(path)))
    if not normalised.is_relative_to(os.path.normpath(root)):
        raise InvalidSpecError(f"{uri}: local files must be under {root} here; use a pvc:// or s3:// URI")
    return normalised


def local_path(uri: str) -> Path | None:
    """The local filesystem path a URI names, or None for a remote URI; a path outside its root is refused."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return _within_file_root(uri, Path(uri))
    if scheme == "file":
        return _within_file_root(uri, Path(rest))
    if scheme not in ("pvc", "pkg"):
        return None
    # A claim or package root is a boundary: a spec value may not climb out of it.
    name, _, path = rest.partition("/")
    if not name or name in (".", ".."):
        what = "claim" if scheme == "pvc" else "package"
        raise InvalidSpecError(f"{uri}: a {scheme}:// URI starts with a {what} name ('..' is not allowed)")
    if scheme == "pvc":
        return _inside(Path(os.environ.get(PVC_ROOT_ENV, PVC_ROOT)) / name, path, uri, f"claim {name!r}")
    root = package_dir(name)
    if root is None:
        raise FileNotFoundError(f"{uri}: Python package {name!r} is not installed")
    return _inside(root, path, uri, f"package {name!r}")


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


def read_bytes(uri: str) -> bytes:
    """The whole file at `uri` as bytes (an `https://` URL is fetched with fsspec's HTTP filesystem)."""
    with _open(uri, "rb") as f:
        return bytes(f.read())


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
    write_file(path, text)


def write_file(path: Path, text: str) -> None:
    """Write `text` to a local path the stage resolved itself (a checkpoint under its claim), atomically; no root
    applies: COTLAB_FILE_ROOT bounds what a spec names, not where the stage keeps its own files."""
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
