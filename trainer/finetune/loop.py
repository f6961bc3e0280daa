"""The optimizer-step loop: accumulate a step's micro-batches, clip, step, report progress, checkpoint.

Each step's loss is the mean over the step's trained (label) tokens on all processes: every micro-batch's summed
token loss is divided by that one count, so long and short traces weigh per token exactly as in one big batch.
DDP and FSDP average gradients over processes, hence the factor `num_processes`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cotlab.api.podcontract import emit_progress
from cotlab.trainer.finetune.batches import (
    BUCKET_STEPS,
    StepPlan,
    bucket_by_length,
    epoch_order,
    micro_batch_examples,
    process_micro_batches,
    shortest_example,
)
from cotlab.trainer.finetune.checkpoints import TrainingPosition, save_checkpoint
from cotlab.trainer.finetune.curves import TrainingCurves
from cotlab.trainer.finetune.data import IGNORE_INDEX, TokenizedExample

logger = logging.getLogger(__name__)

Collate = Callable[[Sequence[TokenizedExample]], dict[str, Any]]  # tensors, and host-side facts such as bounds


@dataclass(frozen=True)
class LoopSettings:
    """What the loop needs from the spec, resolved."""

    batch_size: int
    accumulation: int
    max_grad_norm: float
    seed: int
    save_every_steps: int | None  # None: a checkpoint at the end of each epoch
    checkpoint_root: Path
    dataset_digest: str  # recorded in every checkpoint, so a resume can check what it was trained on
    spec_digest: str
    bucket: bool = False  # padded batches: group each step's examples by length (batches.bucket_by_length)


@dataclass
class ProgressMeter:
    """Throughput and ETA over this attempt's steps (a resumed attempt does not count the steps before it)."""

    plan: StepPlan
    first_step: int
    started: float
    tokens: int = 0

    def marker(self, step: int, loss: float) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        per_step = elapsed / (step - self.first_step)
        return {
            "step": step,
            "totalSteps": self.plan.total_steps,
            "epoch": round(step / self.plan.steps_per_epoch, 4),
            "loss": round(loss, 6),
            "tokensPerSecond": round(self.tokens / elapsed, 1),
            "percent": round(100.0 * step / self.plan.total_steps, 2),
            "etaSeconds": round(per_step * (self.plan.total_steps - step), 1),
        }


@dataclass(frozen=True)
class StepResult:
    """What one optimizer step did."""

    loss: float  # mean token loss over the step's trained tokens, all processes
    tokens: int  # tokens processed here (throughput)
    trained_tokens: int  # label tokens of the step, all processes
    grad_norm: float  # total norm before clipping
    learning_rate: float  # the rate this update used


def _train_step(
    accelerator: Any, model: Any, optimizer: Any, scheduler: Any, batches: list[dict[str, Any]], clip: float
) -> StepResult:
    """One optimizer step over `batches`."""
    device = accelerator.device
    local_items = sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in batches)  # labels shift by one
    # At least 1: a step with no trained token anywhere then has loss 0 and no gradient instead of 0/0 = NaN.
    items = accelerator.reduce(torch.tensor(local_items, device=device), reduction="sum").clamp(min=1)
    model.train()
    total = torch.zeros((), device=device)
    tokens = 0
    for index, batch in enumerate(batches):
        inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        tokens += int(inputs["attention_mask"].sum()) if "attention_mask" in inputs else inputs["input_ids"].numel()
        # Only the step's last backward pass needs to all-reduce gradients.
        sync = index == len(batches) - 1
        with contextlib.nullcontext() if sync else accelerator.no_sync(model):
            # No cache: with one, transformers does not read a flattened row's restarting positions as boundaries
            # (masking_utils._preprocess_mask_arguments; measured: sdpa logits then differ by 0.24 on the tiny Qwen2).
            loss = model(**inputs, num_items_in_batch=items, use_cache=False).loss
            accelerator.backward(loss * accelerator.num_processes)
        total += loss.detach()
    grad_norm = accelerator.clip_grad_norm_(model.parameters(), clip)
    learning_rate = scheduler.get_last_lr()[0]  # before stepping: the rate this update uses
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return StepResult(
        loss=float(accelerator.reduce(total, reduction="sum")),
        tokens=tokens,
        trained_tokens=int(items),
        grad_norm=float(grad_norm),
        learning_rate=float(learning_rate),
    )


def run_loop(
    accelerator: Any,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    *,
    examples: Sequence[TokenizedExample],
    collate: Collate,
    plan: StepPlan,
    settings: LoopSettings,
    start: TrainingPosition,
    curves: TrainingCurves | None = None,
) -> dict[str, Any] | None:
    """Train from `start` to `plan.total_steps`; returns the last progress marker (None if nothing was left).
    Rank 0 passes `curves`, which records each step beside its marker."""
    meter = ProgressMeter(plan, first_step=start.step, started=time.monotonic())
    step, epoch, skip = start.step, start.epoch, start.batch_in_epoch
    last: dict[str, Any] | None = None
    while step < plan.total_steps:
        order = epoch_order(len(examples), seed=settings.seed, epoch=epoch)
        if settings.bucket:
            per_step = settings.batch_size * accelerator.num_processes * settings.accumulation
            lengths = [e.length for e in examples]
            order = bucket_by_length(order, lengths, window=per_step * BUCKET_STEPS, seed=settings.seed, epoch=epoch)
        micro = process_micro_batches(
            order,
            batch_size=settings.batch_size,
            processes=accelerator.num_processes,
            rank=accelerator.process_index,
            filler=shortest_example(examples),
        )
        if len(micro) != plan.micro_batches_per_epoch or skip >= len(micro):
            # Looping on would spin here while the other processes wait in a collective forever.
            raise RuntimeError(
                f"process {accelerator.process_index} of {accelerator.num_processes} got {len(micro)} micro-batches"
                f" for epoch {epoch} (from micro-batch {skip}), the plan says {plan.micro_batches_per_epoch};"
                f" it cannot reach step {plan.total_steps} from step {step}"
            )
        for first in range(skip, len(micro), settings.accumulation):
            if step >= plan.total_steps:
                break
            group = micro[first : first + settings.accumulation]
            batches = [collate(micro_batch_examples(examples, m)) for m in group]
            result = _train_step(accelerator, model, optimizer, scheduler, batches, settings.max_grad_norm)
            step += 1
            reduced = accelerator.reduce(torch.tensor(result.tokens, device=accelerator.device), reduction="sum")
            meter.tokens += int(reduced)
            last = meter.marker(step, result.loss)
            if accelerator.is_main_process:
                emit_progress(**last)
            if curves is not None:
                curves.add_step(
                    last,
                    trained_tokens=result.trained_tokens,
                    grad_norm=result.grad_norm,
                    learning_rate=result.learning_rate,
                )
            done = first + len(group)
            epoch_end = done >= len(micro)
            position = TrainingPosition(
                step=step,
                epoch=epoch + 1 if epoch_end else epoch,
                batch_in_epoch=0 if epoch_end else done,
                total_steps=plan.total_steps,
                dataset_digest=settings.dataset_digest,
                spec_digest=settings.spec_digest,
            )
            every = settings.save_every_steps
            due = step % every == 0 if every is not None else epoch_end
            # The final step is saved as the model itself; a checkpoint of it would only cost time.
            if due and step < plan.total_steps:
                save_checkpoint(accelerator, settings.checkpoint_root, position)
        epoch, skip = epoch + 1, 0
    return last
