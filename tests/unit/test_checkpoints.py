"""Checkpoint discovery and pruning: a checkpoint counts only once its COMPLETE marker is written."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from cotlab.trainer.checkpoints import (
    COMPLETE_MARKER,
    POSITION_FILE,
    TrainingPosition,
    latest_checkpoint,
    prune_checkpoints,
)


def _checkpoint(root: Path, step: int, *, complete: bool) -> Path:
    path = root / f"step-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"weights")
    if complete:
        position = TrainingPosition(step=step, epoch=0, batch_in_epoch=step, total_steps=10)
        (path / POSITION_FILE).write_text(json.dumps(asdict(position)))
        (path / COMPLETE_MARKER).write_text("")
    return path


def test_latest_ignores_a_half_written_checkpoint(tmp_path: Path) -> None:
    _checkpoint(tmp_path, 2, complete=True)
    _checkpoint(tmp_path, 10, complete=True)  # numeric order, not text order: 10 is after 2 and 4
    _checkpoint(tmp_path, 12, complete=False)
    found = latest_checkpoint(tmp_path)
    assert found == (tmp_path / "step-10", TrainingPosition(step=10, epoch=0, batch_in_epoch=10, total_steps=10))


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
