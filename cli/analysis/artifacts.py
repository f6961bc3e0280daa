"""Reading outputs by URI from where cotctl runs: the pods' store as seen from outside the cluster.

A `pvc://CLAIM/PATH` names a PersistentVolumeClaim that only pods can mount, so the CLI reads a local copy of it:
`--artifacts-root DIR` (or `$COTLAB_PVC_ROOT`, the variable the pods' own storage code reads) holds `DIR/CLAIM/PATH`
(an NFS mount of the volume, a `kubectl cp` or rsync of it, a test's claim directory). `file://` URIs and plain
paths are local files (the local runner's outputs); `s3://`, `gs://` and `https://` go through fsspec with the
credentials of this environment.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from ..terminal.errors import CliError

ROOT_HINT = (
    "a claim cannot be mounted here: copy or mount it and pass --artifacts-root DIR "
    "(files at DIR/CLAIM/PATH), or set COTLAB_PVC_ROOT"
)


class ArtifactStore:
    """Where outputs are read from; `pvc_root` is the local copy of the claims (None: there is none)."""

    def __init__(self, pvc_root: Path | None) -> None:
        self.pvc_root = pvc_root

    def resolve(self, uri: str) -> str:
        """A URI or path this process can open for `uri`; a claim without a local copy is an error."""
        scheme, sep, rest = uri.partition("://")
        if not sep:
            return uri
        if scheme == "file":
            return rest
        if scheme == "pvc":
            if ".." in PurePosixPath(rest).parts:
                raise CliError(f"{uri}: '..' is not allowed in a pvc:// path")
            if self.pvc_root is None:
                raise CliError(f"{uri}: the outputs are on a PersistentVolumeClaim", ROOT_HINT)
            return str(self.pvc_root / rest)
        return uri

    def exists(self, uri: str) -> bool:
        from cotlab.trainer.core import storage

        return storage.exists(self.resolve(uri))

    def read_text(self, uri: str) -> str:
        from cotlab.trainer.core import storage

        where = self.resolve(uri)
        try:
            return storage.read_text(where)
        except FileNotFoundError:
            raise CliError(f"{uri}: not found (read at {where})", _missing_hint(uri)) from None

    def iter_lines(self, uri: str) -> Iterator[str]:
        from cotlab.trainer.core import storage

        where = self.resolve(uri)
        if not storage.exists(where):
            raise CliError(f"{uri}: not found (read at {where})", _missing_hint(uri))
        yield from storage.iter_lines(where)


def _missing_hint(uri: str) -> str | None:
    if uri.startswith("pvc://"):
        return "check that --artifacts-root points at the copy of the claim (DIR/CLAIM/...), and that it is current"
    return None
