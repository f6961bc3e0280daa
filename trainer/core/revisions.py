"""Every model and dataset a pod loads, pinned when it starts: hub revisions resolved to commits, local inputs digested.

A hub revision such as `main` moves; the commit it names when the pod starts does not. Each stage resolves every
hub model and dataset it is about to load (huggingface_hub's `model_info` / `dataset_info`, whose `.sha` is the
commit), loads that commit and no other, and records both in its artifacts and its summary (`PinnedInput`, which
the status keeps). A revision that is already a commit is taken as it is, without asking the hub. With the hub
unreachable on purpose (`HF_HUB_OFFLINE=1`), the commit is read from the local cache's `refs/<revision>`, as
huggingface_hub itself does when it loads offline. A local model or dataset has no revision: its content digest
is recorded instead, and checked where a digest was handed down (`check_digest`).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cotlab.api.evalrun import BenchmarkSelection
from cotlab.api.models import ModelSource, PinnedInput
from cotlab.api.podcontract import HF_TOKEN_ENV
from cotlab.api.tracedataset import HuggingFaceSource
from cotlab.trainer.core import storage
from cotlab.trainer.core.artifacts import directory_digest, file_sha256
from cotlab.trainer.core.errors import InvalidInputError, InvalidSpecError

logger = logging.getLogger(__name__)

RepoKind = Literal["model", "dataset"]
HubResolver = Callable[[str, str, RepoKind], str]
"""(repo, revision, kind) -> the commit the revision names now."""

_COMMIT = re.compile(r"[0-9a-f]{40}")


def hub_commit(repo: str, revision: str, kind: RepoKind, *, api: Any = None) -> str:
    """The commit `revision` of hub repo `repo` names now; a 40-hex revision is a commit already.

    `api` is huggingface_hub's `HfApi` (its `model_info`/`dataset_info` return `.sha`); tests pass a stand-in.
    """
    if _COMMIT.fullmatch(revision):
        return revision
    from huggingface_hub import HfApi
    from huggingface_hub.errors import OfflineModeIsEnabled, RepositoryNotFoundError, RevisionNotFoundError

    api = api if api is not None else HfApi(token=os.environ.get(HF_TOKEN_ENV))
    try:
        info = (api.model_info if kind == "model" else api.dataset_info)(repo, revision=revision)
    except OfflineModeIsEnabled:
        return cached_commit(repo, revision, kind)
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise InvalidSpecError(f"{kind} {repo}@{revision}: {exc}") from None
    if not info.sha:
        raise InvalidInputError(f"{kind} {repo}@{revision}: the hub named no commit for it")
    return str(info.sha)


def cached_commit(repo: str, revision: str, kind: RepoKind, *, cache: Path | None = None) -> str:
    """The commit the local hub cache recorded for `repo`@`revision` (its `refs/<revision>` file)."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    root = cache if cache is not None else Path(constants.HF_HUB_CACHE)
    ref = root / repo_folder_name(repo_id=repo, repo_type=kind) / "refs" / revision
    try:
        commit = ref.read_text(encoding="utf-8").strip()
    except OSError:
        raise InvalidSpecError(
            f"{kind} {repo}@{revision}: the hub is offline (HF_HUB_OFFLINE) and the cache at {root} holds no"
            f" {ref.relative_to(root)}; pin a commit as the revision, or let the pod reach the hub"
        ) from None
    return commit


def content_digest(path: Path) -> str:
    """`sha256:<hex>` of a file, or over every file of a directory (`directory_digest`)."""
    return directory_digest(path) if path.is_dir() else "sha256:" + file_sha256(path)


@dataclass(frozen=True)
class PinnedModel:
    """A model source to load (hub revision replaced by its commit) and the record of what it is."""

    source: ModelSource
    record: PinnedInput


def _local(uri: str, field: str) -> Path:
    path = storage.local_path(uri)
    if path is None or not path.exists():
        raise InvalidSpecError(f"{field}: {uri} is not a local path that exists")
    return path


def pin_model(source: ModelSource, role: str, *, resolve: HubResolver = hub_commit, digest: bool = True) -> PinnedModel:
    """`source` at the commit its revision names now (hub), or with the digest of its files (local; a GGUF file's
    own digest when `ggufFile` names one). `digest=False` skips hashing: processes that only load, not record."""
    if source.hub is not None:
        commit = resolve(source.hub, source.revision, "model")
        record = PinnedInput(role=role, hub=source.hub, revision=source.revision, commit=commit)
        return PinnedModel(source.model_copy(update={"revision": commit}), record)
    assert source.uri is not None  # the spec's validator requires one of hub or uri
    record = PinnedInput(role=role, uri=source.uri)
    if digest and storage.local_path(source.uri) is not None:
        path = _local(source.uri, f"{role}.uri")
        if source.gguf_file and path.is_dir():
            path = path / source.gguf_file
        record = record.model_copy(update={"digest": content_digest(path)})
    return PinnedModel(source, record)


def check_digest(record: PinnedInput, expected: str | None, *, what: str) -> None:
    """Refuse a model whose files are not the ones the digest handed down names (overwritten since, or another)."""
    if expected is not None and record.digest is not None and record.digest != expected:
        raise InvalidInputError(
            f"{what}: {record.uri} has digest {record.digest}, but {expected} was recorded when it was made;"
            " its files changed since: train it again, or evaluate the files that are there by uri"
        )


def pin_dataset(
    source: HuggingFaceSource, *, resolve: HubResolver = hub_commit
) -> tuple[HuggingFaceSource, PinnedInput]:
    """A hub dataset at its commit; a local dataset directory (what `datasets` loads from a path) by its digest."""
    local = Path(source.repo)
    if local.is_dir():
        return source, PinnedInput(role="dataset", uri=local.resolve().as_uri(), digest=content_digest(local))
    commit = resolve(source.repo, source.revision, "dataset")
    record = PinnedInput(role="dataset", hub=source.repo, revision=source.revision, commit=commit)
    return source.model_copy(update={"revision": commit}), record


def pin_benchmark(
    selection: BenchmarkSelection, repo: str, revision: str, *, resolve: HubResolver = hub_commit
) -> tuple[BenchmarkSelection, PinnedInput]:
    """A registered hub benchmark at the commit of its revision (the selection's, else the registry's)."""
    commit = resolve(repo, revision, "dataset")
    record = PinnedInput(role=f"benchmark/{selection.name}", hub=repo, revision=revision, commit=commit)
    return selection.model_copy(update={"revision": commit}), record
