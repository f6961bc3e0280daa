"""Training checkpoints: `checkpoints/step-<N>/` with accelerate's state, our position, and a COMPLETE marker.

`accelerator.save_state` writes the model, optimizer, registered objects (the LR scheduler) and every RNG;
`position.json` says where training stood (step, epoch, micro-batches of that epoch done, total steps).
`COMPLETE` is written last, so a checkpoint cut short by a kill is never resumed from; the last `KEEP` complete
checkpoints are kept and everything else under `checkpoints/` is removed.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import storage

logger = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
POSITION_FILE = "position.json"
COMPLETE_MARKER = "COMPLETE"
KEEP = 2
_STEP_DIR = re.compile(r"^step-(\d+)$")


@dataclass(frozen=True)
class TrainingPosition:
    """Where training stands after an optimizer step; `batch_in_epoch` counts this process's micro-batches."""

    step: int
    epoch: int
    batch_in_epoch: int
    total_steps: int


START = TrainingPosition(step=0, epoch=0, batch_in_epoch=0, total_steps=0)


def _step_dirs(root: Path) -> list[tuple[int, Path]]:
    if not root.is_dir():
        return []
    found = ((_STEP_DIR.match(p.name), p) for p in root.iterdir() if p.is_dir())
    return sorted((int(m.group(1)), p) for m, p in found if m)


def complete_checkpoints(root: Path) -> list[tuple[Path, TrainingPosition]]:
    """The complete checkpoints under `root`, oldest first."""
    complete = []
    for _, path in _step_dirs(root):
        if (path / COMPLETE_MARKER).is_file():
            position = json.loads((path / POSITION_FILE).read_text(encoding="utf-8"))
            complete.append((path, TrainingPosition(**position)))
    return complete


def latest_checkpoint(root: Path) -> tuple[Path, TrainingPosition] | None:
    """The newest complete checkpoint under `root`, or None; half-written ones are ignored."""
    complete = complete_checkpoints(root)
    return complete[-1] if complete else None


def save_checkpoint(accelerator: Any, root: Path, position: TrainingPosition) -> Path:
    """Save the training state at `position` (every process takes part), then mark it complete and prune."""
    path = root / f"step-{position.step}"
    if accelerator.is_main_process and path.exists():
        shutil.rmtree(path)  # a half-written checkpoint of the same step from a killed attempt
    accelerator.wait_for_everyone()
    accelerator.save_state(str(path))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        storage.write_text(str(path / POSITION_FILE), json.dumps(asdict(position)))
        storage.write_text(str(path / COMPLETE_MARKER), "")
        prune_checkpoints(root)
        logger.info("saved a checkpoint", extra={"path": str(path), "step": position.step})
    accelerator.wait_for_everyone()
    return path


def prune_checkpoints(root: Path, keep: int = KEEP) -> None:
    """Remove all but the newest `keep` complete checkpoints, and any incomplete one."""
    kept = {path for path, _ in complete_checkpoints(root)[-keep:]}
    for _, path in _step_dirs(root):
        if path not in kept:
            shutil.rmtree(path)
