"""Checkpoint discovery and pruning: a checkpoint counts only once its COMPLETE marker is written."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pytest

from cotlab.api.finetunerun import FineTuneRunSpec
from cotlab.trainer.core.errors import InvalidSpecError
from cotlab.trainer.finetune.checkpoints import (
    COMPLETE_MARKER,
    POSITION_FILE,
    TrainingPosition,
    check_resumable,
    latest_checkpoint,
    prune_checkpoints,
)
from cotlab.trainer.finetune.stage import training_spec_digest

DATASET = "sha256:" + "d" * 64
SPEC = "sha256:" + "5" * 64


def _checkpoint(root: Path, step: int, *, complete: bool) -> Path:
    path = root / f"step-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"weights")
    if complete:
        position = TrainingPosition(
            step=step, epoch=0, batch_in_epoch=step, total_steps=10, dataset_digest=DATASET, spec_digest=SPEC
        )
        (path / POSITION_FILE).write_text(json.dumps(asdict(position)))
        (path / COMPLETE_MARKER).write_text("")
    return path


def test_latest_ignores_a_half_written_checkpoint(tmp_path: Path) -> None:
    _checkpoint(tmp_path, 2, complete=True)
    _checkpoint(tmp_path, 10, complete=True)  # numeric order, not text order: 10 is after 2 and 4
    _checkpoint(tmp_path, 12, complete=False)
    found = latest_checkpoint(tmp_path)
    want = TrainingPosition(
        step=10, epoch=0, batch_in_epoch=10, total_steps=10, dataset_digest=DATASET, spec_digest=SPEC
    )
    assert found == (tmp_path / "step-10", want)


def test_latest_of_nothing(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path / "absent") is None
    _checkpoint(tmp_path, 2, complete=False)
    assert latest_checkpoint(tmp_path) is None


def test_prune_keeps_the_two_newest_complete(tmp_path: Path) -> None:
    for step, complete in [(2, True), (4, True), (6, False), (8, True), (10, False)]:
        _checkpoint(tmp_path, step, complete=complete)
    (tmp_path / "unrelated").mkdir()
    prune_checkpoints(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-4", "step-8", "unrelated"]


def test_resumable_only_with_the_same_dataset_spec_and_steps(tmp_path: Path) -> None:
    path = _checkpoint(tmp_path, 4, complete=True)
    found = latest_checkpoint(tmp_path)
    assert found is not None
    check_resumable(path, found[1], dataset_digest=DATASET, spec_digest=SPEC, total_steps=10)


@pytest.mark.parametrize(
    ("dataset", "spec", "steps", "match"),
    [
        ("sha256:" + "e" * 64, SPEC, 10, r"differs: dataset \(sha256:d+ at the checkpoint, sha256:e+ now\); use a"),
        (DATASET, "sha256:" + "6" * 64, 10, r"differs: spec \(sha256:5+ at the checkpoint, sha256:6+ now\); use a"),
        ("sha256:" + "e" * 64, "sha256:" + "6" * 64, 10, r"differs: dataset \(.*\), spec \("),
        (DATASET, SPEC, 12, "was written for 10 steps, this run takes 12"),
    ],
    ids=["dataset", "spec", "both", "steps"],
)
def test_resume_from_other_inputs_is_refused(tmp_path: Path, dataset: str, spec: str, steps: int, match: str) -> None:
    path = _checkpoint(tmp_path, 4, complete=True)
    found = latest_checkpoint(tmp_path)
    assert found is not None
    with pytest.raises(InvalidSpecError, match=match) as refused:
        check_resumable(path, found[1], dataset_digest=dataset, spec_digest=spec, total_steps=steps)
    assert str(path) in str(refused.value)


def test_an_old_format_checkpoint_is_refused(tmp_path: Path) -> None:
    path = _checkpoint(tmp_path, 4, complete=True)
    old = {"step": 4, "epoch": 0, "batch_in_epoch": 4, "total_steps": 10}  # written before the digests
    (path / POSITION_FILE).write_text(json.dumps(old))
    found = latest_checkpoint(tmp_path)
    assert found == (path, TrainingPosition(step=4, epoch=0, batch_in_epoch=4, total_steps=10))
    with pytest.raises(InvalidSpecError, match="old-format checkpoint without the dataset and spec digests") as e:
        check_resumable(path, found[1], dataset_digest=DATASET, spec_digest=SPEC, total_steps=10)
    assert str(path) in str(e.value)
    with pytest.raises(InvalidSpecError, match="old-format"):
        check_resumable(
            path, replace(found[1], dataset_digest=DATASET), dataset_digest=DATASET, spec_digest=SPEC, total_steps=10
        )


BASE_SPEC: dict[str, Any] = {
    "baseModel": {"hub": "Qwen/Qwen2.5-0.5B"},
    "datasetRef": {"name": "traces"},
    "method": "lora",
    "lora": {"r": 8},
    "training": {"learningRate": 1e-4, "epochs": 2},
}


def _digest(**changes: Any) -> str:
    return training_spec_digest(FineTuneRunSpec.model_validate(BASE_SPEC | changes))


@pytest.mark.parametrize(
    "changes",
    [
        {"suspend": True},
        {"maxRetries": 7},
        {"output": {"uri": "pvc://models/elsewhere"}},
        {"datasetRef": {"name": "renamed"}},  # the dataset's digest stands for what it resolves to
        {"resources": {"limits": {"cpu": "2"}}},
        {"nodeSelector": {"gpu": "h100"}},
        {"queueName": "urgent"},
        {"image": "cotlab:dev"},
        {"serviceAccountName": "trainer"},
        {"podTemplateOverrides": {"labels": {"a": "b"}}},
        {"tracking": {"mlflow": {"uri": "http://mlflow:5000", "experiment": "study"}}},  # where curves go
        {"training": {"learningRate": 1e-4, "epochs": 2.0, "schedule": "cosine"}},  # explicit defaults
        {"training": {"learningRate": 1e-4, "epochs": 2, "torchCompile": True}},  # how, not what, it computes
    ],
    ids=lambda c: next(iter(c)) + ("-torchCompile" if "torchCompile" in c.get("training", {}) else ""),
)
def test_spec_digest_ignores_scheduling_fields(changes: dict[str, Any]) -> None:
    assert _digest(**changes) == _digest()


@pytest.mark.parametrize(
    "changes",
    [
        {"training": {"learningRate": 2e-4, "epochs": 2}},
        {"training": {"learningRate": 1e-4, "epochs": 2, "seed": 1}},
        {"lora": {"r": 16}},
        {"method": "full", "lora": None},
        {"baseModel": {"hub": "Qwen/Qwen2.5-0.5B", "revision": "abc123"}},
        {"distributed": {"strategy": "ddp"}},
    ],
    ids=["learningRate", "seed", "lora", "method", "baseModel", "distributed"],
)
def test_spec_digest_covers_training_fields(changes: dict[str, Any]) -> None:
    assert _digest(**changes) != _digest()
    assert _digest().startswith("sha256:") and len(_digest()) == 7 + 64


def test_spec_digest_of_a_stored_spec_is_what_it_was() -> None:
    """Digests are kept in checkpoints: a field added to the API (torchCompile, 2026-12-05) must not change the
    digest of a spec that does not set it, or every run started before would refuse its own checkpoints."""
    assert _digest() == "sha256:d8d64fef420a801a6d39e797f3ec01daa94215c58c49b8fb85eb89663ea407c9"
