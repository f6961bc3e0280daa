"""One optimizer step of the training loop over given micro-batches, as a worker of a test (1 or 2 processes).

`python -m tests.workload.per_token_step MODEL_DIR OUT.pt` under torch's launcher (or alone): every process takes
its share of `MICRO_BATCHES` (process k gets the k-th of each pair when there are 2), runs `_train_step` with SGD
at learning rate 1 and no effective clipping, and rank 0 saves the step's loss and each parameter's gradient
(its change, negated).
"""

from __future__ import annotations

import sys

import torch

from cotlab.trainer.finetune.batches import pad_batch
from cotlab.trainer.finetune.data import IGNORE_INDEX, TokenizedExample
from cotlab.trainer.finetune.loop import _train_step

IGNORED = IGNORE_INDEX


def _example(name: str, length: int, trained_from: int | None) -> TokenizedExample:
    ids = tuple(10 + (7 * i + len(name)) % 200 for i in range(length))
    labels = tuple(IGNORED if trained_from is None or i < trained_from else token for i, token in enumerate(ids))
    return TokenizedExample(id=name, input_ids=ids, labels=labels)


# Uneven lengths and trained spans; "empty" has no trained token at all.
LONG = _example("long", 40, 5)
SHORT = _example("short", 9, 3)
MEDIUM = _example("medium", 23, 20)
EMPTY = _example("empty", 17, None)
TINY = _example("tiny", 6, 4)
# Per process, the micro-batches it accumulates in one step (two processes), or all of them as one batch.
SPLIT = [[[LONG, SHORT], [TINY]], [[MEDIUM], [EMPTY]]]
ONE_BATCH = [[[LONG, SHORT, TINY, MEDIUM, EMPTY]]]


def main(model_dir: str, out: str) -> None:
    from accelerate import Accelerator
    from transformers import AutoModelForCausalLM

    accelerator = Accelerator(cpu=True)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    model, optimizer = accelerator.prepare(model, optimizer)
    plan = ONE_BATCH if accelerator.num_processes == 1 else SPLIT
    batches = [pad_batch(group, pad_id=0) for group in plan[accelerator.process_index]]
    loss = _train_step(accelerator, model, optimizer, scheduler, batches, clip=1e9).loss
    if accelerator.is_main_process:
        after = dict(accelerator.unwrap_model(model).named_parameters())
        grads = {name: before[name] - after[name].detach() for name in before}
        torch.save({"loss": loss, "grads": grads, "processes": accelerator.num_processes}, out)
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
