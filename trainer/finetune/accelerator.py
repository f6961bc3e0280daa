"""The accelerate `Accelerator` for a FineTuneRun: the mixed precision the hardware allows and the sharding plugin.

The world size comes from the launcher's environment (`WORLD_SIZE`, set by torchrun or `accelerate launch`);
one process (the CPU quickstart, one GPU) needs no plugin. With several, `fsdp` shards with FSDP2, wrapping each
decoder layer (the model's `_no_split_modules`) and checkpointing sharded state (every rank writes its own
shard, fast); the final model is gathered whole. `ddp` replicates. Gradient accumulation is done by the
training loop, not by `Accelerator(gradient_accumulation_steps=…)`: it normalises each optimizer step's loss
by that step's trained-token count, and an epoch's last step may take fewer micro-batches.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from cotlab.api.finetunerun import Distributed, Precision
from cotlab.trainer.core.errors import InvalidSpecError

logger = logging.getLogger(__name__)

ACCELERATE_PRECISION: dict[Precision, str] = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}


def world_size() -> int:
    """The number of training processes the launcher started (1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def supported_precision(requested: Precision) -> Precision:
    """`requested` when this machine can train in it; fp32 otherwise (CPU), with a warning."""
    if requested == "fp32":
        return requested
    on_gpu = torch.cuda.is_available()
    if on_gpu and (requested == "fp16" or torch.cuda.is_bf16_supported()):
        return requested
    logger.warning(
        "training in fp32: %s is not supported here",
        requested,
        extra={"requested": requested, "cuda": on_gpu},
    )
    return "fp32"


def fsdp_plugin() -> Any:
    """FSDP2 over the model's decoder layers (its `_no_split_modules`), checkpointed as per-rank shards."""
    from accelerate import FullyShardedDataParallelPlugin

    return FullyShardedDataParallelPlugin(
        fsdp_version=2,
        auto_wrap_policy="transformer_based_wrap",
        state_dict_type="SHARDED_STATE_DICT",
        # One rank per node loads the weights; transformers builds the others on the meta device (its
        # `is_fsdp_enabled()` reads the environment this plugin and the Accelerator export, both created before
        # the model is loaded) and accelerate's fsdp2_prepare_model broadcasts each shard from that rank.
        cpu_ram_efficient_loading=True,
    )


def _plugins(distributed: Distributed) -> dict[str, Any]:
    """The Accelerator keyword arguments for the strategy, when there is more than one process."""
    if world_size() == 1:
        return {}
    if distributed.strategy == "fsdp":
        if not torch.cuda.is_available():
            # accelerate 1.15 turns the plugin into FSDP only for accelerator process groups (state.py, the
            # distributed types listed before `DistributedType.FSDP` is set; MULTI_CPU is not one of them):
            # on CPU it would silently train DDP instead. The API already refuses fsdp with gpusPerNode 0.
            raise InvalidSpecError("spec.distributed.strategy: fsdp needs GPUs, and this pod sees none; use ddp")

        return {"fsdp_plugin": fsdp_plugin()}
    return {}  # ddp: accelerate wraps the model in DistributedDataParallel from the launcher's environment


def build_accelerator(precision: Precision, distributed: Distributed) -> Any:
    """The Accelerator for this run."""
    from accelerate import Accelerator

    # accelerate only forms a CPU process group (gloo) when told `cpu=True` (accelerate/state.py
    # `_prepare_backend`: with LOCAL_RANK set and cpu False it looks for an accelerator and, finding none,
    # silently runs each process alone).
    cpu = distributed.gpus_per_node == 0 or not torch.cuda.is_available()
    return Accelerator(
        mixed_precision=ACCELERATE_PRECISION[supported_precision(precision)], cpu=cpu, **_plugins(distributed)
    )
