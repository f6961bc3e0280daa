"""Training checkpoints: `checkpoints/step-<N>/` with accelerate's state, our position, and a COMPLETE marker.

`accelerator.save_state` writes the model, optimizer, registered objects (the LR scheduler) and every RNG;
`position.json` says where training stood (step, epoch, micro-batches of that epoch done, total steps) and what it
was trained on (the dataset's digest and a digest of the spec's training-relevant parts): a checkpoint is resumed
only by a run with the same ones (`check_resumable`).
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

from cotlab.trainer.core import storage
from cotlab.trainer.core.errors import InvalidSpecError

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
    dataset_digest: str | None = None  # None only in checkpoints written before these were recorded
    spec_digest: str | None = None


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


def check_resumable(
    path: Path, position: TrainingPosition, *, dataset_digest: str, spec_digest: str, total_steps: int
) -> None:
    """Refuse to resume from the checkpoint at `path` unless it was trained on this dataset, spec and step count."""
    fresh = "use a fresh checkpoint directory (or remove this one)"
    if position.dataset_digest is None or position.spec_digest is None:
        raise InvalidSpecError(
            f"checkpointDir: {path} is an old-format checkpoint without the dataset and spec digests it was"
            f" trained on, so resuming from it cannot be checked; {fresh}"
        )
    differs = [
        f"{what} ({was} at the checkpoint, {now} now)"
        for what, was, now in (
            ("dataset", position.dataset_digest, dataset_digest),
            ("spec", position.spec_digest, spec_digest),
        )
        if was != now
    ]
    if differs:
        raise InvalidSpecError(
            f"checkpointDir: {path} was trained on different inputs; differs: {', '.join(differs)}; {fresh}"
        )
    if position.total_steps != total_steps:
        raise InvalidSpecError(
            f"checkpointDir: {path} was written for {position.total_steps} steps, this run takes {total_steps}; {fresh}"
        )


def save_checkpoint(accelerator: Any, root: Path, position: TrainingPosition) -> Path:
    """Save the training state at `position` (every process takes part), then mark it complete and prune."""
    path = root / f"step-{position.step}"
    if accelerator.is_main_process and path.exists():
        shutil.rmtree(path)  # a half-written checkpoint of the same step from a killed attempt
    accelerator.wait_for_everyone()
    accelerator.save_state(str(path))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        storage.write_file(path / POSITION_FILE, json.dumps(asdict(position)))
        storage.write_file(path / COMPLETE_MARKER, "")
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


def save_trainable_weights_only(accelerator: Any) -> None:
    """Make checkpoints hold only the trainable weights (a LoRA adapter, not the frozen base it is attached to).

    accelerate's `save_state` writes each model's whole state dict; its save and load pre-hooks
    (`register_save_state_pre_hook`, `register_load_state_pre_hook`, accelerator.py) may trim the saved dict and
    load the model themselves. The base's weights come from the base model on resume, as on the first attempt.
    FSDP saves its shards its own way and passes no weights to the hooks, so they leave it alone.
    """
    accelerator.register_save_state_pre_hook(_keep_trainable)
    accelerator.register_load_state_pre_hook(_load_trainable)


def _trainable_names(model: Any) -> set[str]:
    return {name for name, param in model.named_parameters() if param.requires_grad}


def _keep_trainable(models: list[Any], weights: list[dict[str, Any]], _output_dir: str) -> None:
    for model, state in zip(models, weights, strict=False):
        trainable = _trainable_names(model)
        for name in [name for name in state if name not in trainable]:
            del state[name]


def _load_trainable(models: list[Any], input_dir: str) -> None:
    from accelerate.utils.constants import SAFE_MODEL_NAME
    from safetensors.torch import load_file

    for index, model in enumerate(list(models)):
        path = Path(input_dir) / f"{SAFE_MODEL_NAME}{'' if index == 0 else f'_{index}'}.safetensors"
        if not path.is_file():
            continue  # not a safetensors checkpoint: accelerate's own loading says what is missing
        missing, unexpected = model.load_state_dict(load_file(str(path)), strict=False)
        lost = sorted(set(missing) & _trainable_names(model))
        if unexpected or lost:
            raise InvalidSpecError(
                f"checkpointDir: {path} does not hold this model's trainable weights (missing {lost[:5]},"
                f" unexpected {sorted(unexpected)[:5]}); use a fresh checkpoint directory (or remove this one)"
            )
        models.remove(model)  # loaded here: accelerate must not load it again, strictly, from the same file
