"""A worker of a 2-process launch that trains in bf16 under FSDP2 on the CPU (gloo), as a multi-GPU run does:
`python -m tests.workload.mixed_precision_step MODEL_DIR OUT.pt METHOD` under torch's launcher (METHOD: full or
lora).

The pieces are run_finetune's own, with bf16 forced (the stage trains in fp32 on a CPU, `supported_precision`):
`make_accelerator`, `base_dtype` and `load_base_model` (rank 1 on the meta device), `prepare_for_training`,
`prepare`. Every rank trains on the same micro-batch. Rank 0 saves the full gradients of that micro-batch taken
once and accumulated 7 times (6 under `no_sync`, as `_train_step` does), the dtypes of the local parameters and of
the residual stream, and the losses of three optimizer steps through `_train_step`.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import torch

from cotlab.api.finetunerun import LoraSettings
from cotlab.api.models import ModelSource
from cotlab.trainer.finetune.accelerator import make_accelerator, prepare
from cotlab.trainer.finetune.batches import pad_batch
from cotlab.trainer.finetune.data import IGNORE_INDEX
from cotlab.trainer.finetune.loop import _train_step
from cotlab.trainer.finetune.model import (
    base_dtype,
    load_base_model,
    make_optimizer,
    peft_base,
    prepare_for_training,
)

from .per_token_step import LONG

ACCUMULATED = 7  # not a power of two: k equal bf16 gradients summed in bf16 round for k = 3, 5, 6, 7


def _gradients(accelerator: Any, model: Any, batch: dict[str, Any], times: int) -> dict[str, torch.Tensor]:
    """The full (gathered) gradients of the trainable parameters after `times` backward passes over `batch`."""
    items = torch.tensor(int((batch["labels"][:, 1:] != IGNORE_INDEX).sum()))  # as _train_step counts them
    for index in range(times):
        sync = index == times - 1
        with contextlib.nullcontext() if sync else accelerator.no_sync(model):
            accelerator.backward(model(**batch, num_items_in_batch=items, use_cache=False).loss)
    grads = {name: p.grad.full_tensor().double() for name, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    return grads


def main(model_dir: str, out: str, method: str) -> None:
    accelerator = make_accelerator("bf16", cpu=True, shard=True)
    lora = LoraSettings(targetModules=["q_proj", "v_proj"], dropout=0.0) if method == "lora" else None
    torch.manual_seed(0)
    model = load_base_model(
        ModelSource(uri=Path(model_dir).as_uri()),
        weights=accelerator.local_process_index == 0,
        dtype=base_dtype(lora=lora is not None, mixed_precision=str(accelerator.mixed_precision)),
    )
    model = prepare_for_training(model, lora=lora)
    optimizer = make_optimizer(model, learning_rate=1e-3, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    model, optimizer = prepare(accelerator, model, optimizer)
    batch = pad_batch([LONG], pad_id=0)
    residual: list[str] = []  # the dtype of the hidden states the decoder's last norm gets (FineTuneRun docs)
    norm = peft_base(accelerator.unwrap_model(model)).get_decoder().norm
    norm.register_forward_pre_hook(lambda _, args: residual.append(str(args[0].dtype)))
    model.train()
    once = _gradients(accelerator, model, batch, 1)
    accumulated = _gradients(accelerator, model, batch, ACCUMULATED)
    losses = [_train_step(accelerator, model, optimizer, scheduler, [batch, batch], clip=1.0).loss for _ in range(3)]
    if accelerator.is_main_process:
        dtypes = {
            "trained": sorted({str(p.dtype) for p in model.parameters() if p.requires_grad}),
            "frozen": sorted({str(p.dtype) for p in model.parameters() if not p.requires_grad}),
            "residual": sorted(set(residual)),
        }
        torch.save({"once": once, "accumulated": accumulated, "losses": losses, "dtypes": dtypes}, out)
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main(*sys.argv[1:4])
