"""Batches: the seeded order of each epoch, its micro-batches per process, the step count, and the two collators.

- Order: epoch `e` is a permutation drawn from `seed` and `e` alone, so a resumed run replays the same order
  and skips the micro-batches already trained.
- Epochs: every example is trained exactly once per epoch, whatever the batch size and the number of processes.
  When the epoch's batches do not fill the last round (50 examples on 8 processes), the processes left over
  run a filler micro-batch instead: the shortest example with every label ignored. It joins the collectives
  (DDP's all-reduce, FSDP's all-gathers: a process that skipped them would hang the others) and trains nothing,
  so the last step of an epoch takes fewer examples; the per-token loss divides by the step's trained tokens on
  all processes, which leaves the filler out.
- Padding (the default): each micro-batch is right-padded to its own longest example; pads are found by length
  (attention mask 0, label ignored), never by comparing ids with the pad id, which may equal EOS.
- Flattening (`packing: true`): a micro-batch is one row of concatenated examples whose `position_ids` restart
  at 0, as transformers' `DataCollatorWithFlattening` builds it, with no attention mask and no cache. The pinned
  transformers (5.23) keeps the examples apart for every attention in `FLATTENING_ATTENTION`: flash attention
  reads the restarts as varlen boundaries, and for sdpa and eager `masking_utils.create_causal_mask` builds a
  block-causal mask from them (`find_packed_sequence_indices`, used only when no attention mask and no cache is
  passed). attention.py's segment attention, what training uses without flash attention, reads them too.
  tests/workload/test_flattening.py checks all four against padded batches.
- Bucketing: where flattening does not apply (`packing: false`, or an attention implementation outside
  `FLATTENING_ATTENTION`, such as a remote-code model's own), each window of `BUCKET_STEPS` optimizer steps' worth
  of the epoch's order is sorted by length, so the micro-batches of a step pad to similar lengths; the window's
  steps are then put back in a seeded random order, so long and short steps still alternate.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from cotlab.trainer.finetune.attention import SEGMENT_ATTENTION
from cotlab.trainer.finetune.data import IGNORE_INDEX, TokenizedExample

logger = logging.getLogger(__name__)

# Attention implementations that keep a flattened row's examples apart (see the module docstring).
FLATTENING_ATTENTION = frozenset({"flash_attention_2", "flash_attention_3", "sdpa", "eager", SEGMENT_ATTENTION})
BUCKET_STEPS = 8


@dataclass(frozen=True)
class StepPlan:
    """How an epoch splits into micro-batches and optimizer steps, and how many steps the run takes."""

    micro_batches_per_epoch: int  # per process
    steps_per_epoch: int
    total_steps: int

    @property
    def epochs(self) -> int:
        """Epochs the run iterates over (the last one may stop early)."""
        return math.ceil(self.total_steps / self.steps_per_epoch)


def plan_steps(
    examples: int, *, batch_size: int, processes: int, accumulation: int, epochs: float, max_steps: int | None
) -> StepPlan:
    """The step plan: `max_steps` when set, else `epochs` (fractions round up to a whole step)."""
    micro = math.ceil(math.ceil(examples / batch_size) / processes)
    per_epoch = math.ceil(micro / accumulation)
    total = max_steps if max_steps is not None else max(1, math.ceil(epochs * per_epoch))
    return StepPlan(micro_batches_per_epoch=micro, steps_per_epoch=per_epoch, total_steps=total)


def epoch_order(examples: int, *, seed: int, epoch: int) -> list[int]:
    """The example indices of epoch `epoch`, shuffled by a generator seeded with (seed, epoch) only."""
    order = list(range(examples))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    return order


@dataclass(frozen=True)
class MicroBatch:
    """The examples one process runs in one forward/backward pass; a `filler` runs them with every label ignored."""

    indices: tuple[int, ...]
    filler: bool = False


def process_micro_batches(
    order: Sequence[int], *, batch_size: int, processes: int, rank: int, filler: int = 0
) -> list[MicroBatch]:
    """This process's micro-batches of an epoch: batch k of the epoch goes to process k mod `processes`.

    Every process gets `ceil(batches / processes)` of them, `StepPlan.micro_batches_per_epoch`; where the epoch has
    no batch left for a process in the last round (there may be fewer batches than processes), it gets a filler of
    example `filler` (the caller passes the shortest), so each example is still trained exactly once.
    """
    batches = [tuple(order[i : i + batch_size]) for i in range(0, len(order), batch_size)]
    if not batches:
        return []
    padded = math.ceil(len(batches) / processes) * processes
    return [
        MicroBatch(batches[i]) if i < len(batches) else MicroBatch((filler,), filler=True)
        for i in range(rank, padded, processes)
    ]


def micro_batch_examples(examples: Sequence[TokenizedExample], micro: MicroBatch) -> list[TokenizedExample]:
    """The examples of a micro-batch, ready to collate; a filler's labels are all ignored, so it trains nothing."""
    chosen = [examples[i] for i in micro.indices]
    if micro.filler:
        return [dataclasses.replace(e, labels=(IGNORE_INDEX,) * e.length) for e in chosen]
    return chosen


def shortest_example(examples: Sequence[TokenizedExample]) -> int:
    """The index of the shortest example (the first of equals): the cheapest filler."""
    return min(range(len(examples)), key=lambda i: examples[i].length) if examples else 0


def flattening_supported(requested: bool, attn_implementation: str | None) -> bool:
    """Whether to flatten batches: only when asked and the attention implementation keeps examples apart."""
    if requested and attn_implementation not in FLATTENING_ATTENTION:
        logger.info(
            "packing: padding (bucketed by length) instead of flattening, because this attention implementation"
            " is not known to keep flattened examples apart",
            extra={"attn_implementation": attn_implementation, "flattening": sorted(FLATTENING_ATTENTION)},
        )
        return False
    return requested


def bucket_by_length(order: Sequence[int], lengths: Sequence[int], *, window: int, seed: int, epoch: int) -> list[int]:
    """`order` with each run of `window` examples sorted by length (longest first) and cut into `window /
    BUCKET_STEPS`-example steps, whose order within the window is shuffled from (seed, epoch).

    A step's examples depend only on `order` and the examples per step, not on how they split into processes
    and micro-batches, so one process with batch 4 and two with batch 2 train the same steps.
    """
    step = max(1, window // BUCKET_STEPS)
    rng = random.Random(f"{seed}:{epoch}:buckets")
    bucketed: list[int] = []
    for start in range(0, len(order), window):
        ranked = sorted(order[start : start + window], key=lambda i: -lengths[i])
        steps = [ranked[i : i + step] for i in range(0, len(ranked), step)]
        # Only whole steps move: a short last step stays last, or every later step boundary would shift.
        whole = steps if len(steps[-1]) == step else steps[:-1]
        rng.shuffle(whole)
        bucketed.extend(i for s in whole + steps[len(whole) :] for i in s)
    return bucketed


def pad_batch(examples: Sequence[TokenizedExample], *, pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded `input_ids`, `attention_mask` and `labels` (ignored on pads), as long as the longest example."""
    width = max(e.length for e in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    for row, example in enumerate(examples):
        input_ids[row, : example.length] = torch.tensor(example.input_ids)
        attention_mask[row, : example.length] = 1
        labels[row, : example.length] = torch.tensor(example.labels)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def flatten_batch(examples: Sequence[TokenizedExample]) -> dict[str, Any]:
    """One row of concatenated examples with restarting `position_ids`; no attention mask, no padding.
    `segment_bounds` (each example's start, then the row's end) lets segment attention split the row without
    reading the positions back from the device (attention.py)."""
    input_ids = [t for e in examples for t in e.input_ids]
    position_ids = [p for e in examples for p in range(e.length)]
    bounds = [0]
    for example in examples:
        bounds.append(bounds[-1] + example.length)
    # An example's first token would be predicted from the previous example's last: never train on it.
    labels = [IGNORE_INDEX if i == 0 else label for e in examples for i, label in enumerate(e.labels)]
    return {
        "input_ids": torch.tensor([input_ids], dtype=torch.long),
        "position_ids": torch.tensor([position_ids], dtype=torch.long),
        "labels": torch.tensor([labels], dtype=torch.long),
        "segment_bounds": tuple(bounds),
    }
