"""Artifact digests: read a file artifact checking its sha256, and digest a model directory.

A directory's digest is the sha256 of its `sha256sum`-style manifest: one line `<hex>  <relative path>\n` per
file, sorted by path. It covers names and bytes, and can be checked by hand:
`(cd DIR && find . -type f | sed 's|^\\./||' | LC_ALL=C sort | xargs sha256sum) | sha256sum`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import fsspec

from cotlab.api.tracedataset import Artifact
from cotlab.trainer.core import storage
from cotlab.trainer.core.errors import InvalidInputError

CHUNK_BYTES = 1 << 20


def read_verified(artifact: Artifact) -> bytes:
    """The bytes at `artifact.uri`, refused (InvalidInputError naming both digests) when their sha256 differs."""
    path = storage.local_path(artifact.uri)
    if path is not None:
        data = path.read_bytes()
    else:
        with fsspec.open(artifact.uri, "rb") as f:
            data = f.read()
    actual = "sha256:" + hashlib.sha256(data).hexdigest()
    if actual != artifact.digest:
        raise InvalidInputError(
            f"inputs.dataset: {artifact.uri} has digest {actual}, but {artifact.digest} was expected;"
            " the artifact changed after curation: re-run the TraceDataset"
        )
    return data


def file_sha256(path: Path) -> str:
    """The hex sha256 of a local file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def directory_digest(directory: Path) -> str:
    """`sha256:<hex>` over the sorted relative paths and contents of every file under `directory`."""
    files = sorted((p.relative_to(directory).as_posix(), p) for p in directory.rglob("*") if p.is_file())
    manifest = "".join(f"{file_sha256(path)}  {name}\n" for name, path in files)
    return "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
