"""Pinning: hub revisions to commits (the hub's answer is the one thing stood in for), local inputs by digest."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cotlab.api.evalrun import BenchmarkSelection
from cotlab.api.models import ModelSource, PinnedInput
from cotlab.api.tracedataset import HuggingFaceSource
from cotlab.trainer.core.errors import InvalidInputError, InvalidSpecError
from cotlab.trainer.core.revisions import (
    cached_commit,
    check_digest,
    hub_commit,
    pin_benchmark,
    pin_dataset,
    pin_model,
)
from cotlab.trainer.generation.benchmarks import hub_dataset

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class Info:
    sha: str | None


class Hub:
    """What `huggingface_hub.HfApi` answers for repo info: the commit a revision names, or its errors."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.asked: list[tuple[str, str, str]] = []
        self.error = error

    def _info(self, kind: str, repo: str, revision: str) -> Info:
        self.asked.append((kind, repo, revision))
        if self.error is not None:
            raise self.error
        return Info(COMMIT)

    def model_info(self, repo: str, *, revision: str) -> Info:
        return self._info("model", repo, revision)

    def dataset_info(self, repo: str, *, revision: str) -> Info:
        return self._info("dataset", repo, revision)


@pytest.mark.parametrize("kind", ["model", "dataset"])
def test_a_branch_resolves_through_the_repo_info_of_its_kind(kind: Any) -> None:
    hub = Hub()
    assert hub_commit("Qwen/Qwen2.5-32B", "main", kind, api=hub) == COMMIT
    assert hub.asked == [(kind, "Qwen/Qwen2.5-32B", "main")]


def test_a_commit_is_taken_as_it_is_without_asking() -> None:
    hub = Hub()
    assert hub_commit("Qwen/Qwen2.5-32B", COMMIT, "model", api=hub) == COMMIT and hub.asked == []


def test_an_unknown_repo_or_revision_names_both() -> None:
    import httpx2  # huggingface_hub's own HTTP client: its errors carry the response
    from huggingface_hub.errors import RevisionNotFoundError

    response = httpx2.Response(404, request=httpx2.Request("GET", "https://huggingface.co/api/models/x/revision/v9"))
    hub = Hub(RevisionNotFoundError("404 Client Error: Revision Not Found", response=response))
    with pytest.raises(InvalidSpecError, match="model Qwen/Qwen2.5-32B@v9: 404 Client Error"):
        hub_commit("Qwen/Qwen2.5-32B", "v9", "model", api=hub)


def test_offline_the_commit_comes_from_the_caches_refs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """huggingface_hub keeps `refs/<revision>` in its cache; an offline pod resolves through it, as loading does."""
    from huggingface_hub import constants
    from huggingface_hub.errors import OfflineModeIsEnabled

    refs = tmp_path / "datasets--nvidia--Nemotron-Math-HumanReasoning" / "refs"
    refs.mkdir(parents=True)
    (refs / "main").write_text(COMMIT)
    assert cached_commit("nvidia/Nemotron-Math-HumanReasoning", "main", "dataset", cache=tmp_path) == COMMIT
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    offline = Hub(OfflineModeIsEnabled("offline"))
    assert hub_commit("nvidia/Nemotron-Math-HumanReasoning", "main", "dataset", api=offline) == COMMIT
    with pytest.raises(InvalidSpecError, match=r"model Qwen/Qwen2.5-32B@main: the hub is offline .* holds no"):
        hub_commit("Qwen/Qwen2.5-32B", "main", "model", api=offline)


def _digest(files: dict[str, bytes]) -> str:
    """sha256 over each file's sha256 and relative path, sorted by path (what the stages record)."""
    lines = "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in sorted(files.items()))
    return "sha256:" + hashlib.sha256(lines.encode()).hexdigest()


def test_pin_model_resolves_a_hub_model_and_digests_a_local_one(tmp_path: Path) -> None:
    hub = pin_model(ModelSource(hub="Qwen/Qwen2.5-32B"), "baseModel", resolve=lambda *_: COMMIT)
    assert hub.source == ModelSource(hub="Qwen/Qwen2.5-32B", revision=COMMIT)
    assert hub.record == PinnedInput(role="baseModel", hub="Qwen/Qwen2.5-32B", revision="main", commit=COMMIT)

    files = {"config.json": b"{}", "model.safetensors": b"weights", "sub/tokenizer.json": b"tok"}
    for name, data in files.items():
        (tmp_path / "model" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "model" / name).write_bytes(data)
    uri = (tmp_path / "model").as_uri()
    local = pin_model(ModelSource(uri=uri), "model", resolve=lambda *_: pytest.fail("asked the hub"))
    assert local.source == ModelSource(uri=uri)
    assert local.record == PinnedInput(role="model", uri=uri, digest=_digest(files))
    gguf = pin_model(ModelSource(uri=uri, gguf_file="model.safetensors"), "model")
    assert gguf.record.digest == "sha256:" + hashlib.sha256(b"weights").hexdigest()  # that one file
    assert pin_model(ModelSource(uri=uri), "tokenizer", digest=False).record == PinnedInput(role="tokenizer", uri=uri)
    with pytest.raises(InvalidSpecError, match=r"model.uri: file:///nowhere is not a local path that exists"):
        pin_model(ModelSource(uri="file:///nowhere"), "model")


def test_a_digest_handed_down_must_match_the_files() -> None:
    record = PinnedInput(role="model", uri="file:///m", digest="sha256:new")
    check_digest(record, None, what="inputs.model")
    check_digest(record, "sha256:new", what="inputs.model")
    with pytest.raises(InvalidInputError, match="inputs.model: file:///m has digest sha256:new, but sha256:old was"):
        check_digest(record, "sha256:old", what="inputs.model")


def test_pin_dataset_resolves_a_hub_dataset_and_digests_a_local_directory(tmp_path: Path) -> None:
    hub = HuggingFaceSource(repo="nvidia/Nemotron-Math-HumanReasoning")
    source, record = pin_dataset(hub, resolve=lambda repo, revision, kind: COMMIT if kind == "dataset" else "")
    assert source.revision == COMMIT and record == PinnedInput(
        role="dataset", hub="nvidia/Nemotron-Math-HumanReasoning", revision="main", commit=COMMIT
    )
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_bytes(b"{}\n")
    local, record = pin_dataset(HuggingFaceSource(repo=str(tmp_path)), resolve=lambda *_: pytest.fail("asked"))
    assert local.revision == "main" and record.digest == _digest({"data/train.jsonl": b"{}\n"})


def test_a_registered_hub_benchmark_is_pinned_and_a_pinned_file_is_not() -> None:
    assert hub_dataset(BenchmarkSelection(name="aime24")) is None  # NeMo-Skills' file, pinned by its sha256
    selection = BenchmarkSelection(name="amc23")
    repo, revision = hub_dataset(selection) or ("", "")
    assert (repo, revision) == ("math-ai/amc23", "main")
    pinned, record = pin_benchmark(selection, repo, revision, resolve=lambda *_: COMMIT)
    assert pinned.revision == COMMIT and record.role == "benchmark/amc23" and record.commit == COMMIT
