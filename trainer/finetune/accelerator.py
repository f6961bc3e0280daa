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

logger = logging.getLogger(__name__)

ACCELERATE_PRECISION: dict[Precision, str] = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}
LOW_PRECISION_DTYPES: dict[Precision, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}


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


def fsdp_plugin(precision: Precision) -> Any:
    """FSDP2 over the model's decoder layers (its `_no_split_modules`), checkpointed as per-rank shards.

    Mixed precision gathers the weights in the training precision but reduces and accumulates gradients in fp32,
    and leaves the model's outputs as computed. accelerate's own policy for "bf16" (`set_mixed_precision`) has
    bf16 for all three: FSDP2 then accumulates a step's micro-batch gradients under `no_sync` in bf16 (7 equal
    micro-batches summed to 7x one's gradient 6e-3 off, in fp32 2.5e-4: tests/workload/test_finetune_distributed.py),
    and casts the fp32 token loss to bf16 (5.59375 reported for 5.5887). torchtitan's default is the same: bf16
    gathers, fp32 reductions (twice the bytes of the reduce-scatter, the price of gradients that add up).
    """
    from accelerate import FullyShardedDataParallelPlugin
    from torch.distributed.fsdp import MixedPrecisionPolicy

    low = LOW_PRECISION_DTYPES.get(precision)
    policy = MixedPrecisionPolicy(param_dtype=low, reduce_dtype=torch.float32) if low else None
    return FullyShardedDataParallelPlugin(
        fsdp_version=2,
        auto_wrap_policy="transformer_based_wrap",
        state_dict_type="SHARDED_STATE_DICT",
        # One rank per node loads the weights; transformers builds the others on the meta device (its
        # `is_fsdp_enabled()` reads the environment this plugin and the Accelerator export, both created before
        # the model is loaded) and accelerate's fsdp2_prepare_model broadcasts each shard from that rank.
        cpu_ram_efficient_loading=True,
        # Kept by the Accelerator: its `set_mixed_precision(..., override=False)` only fills a missing policy.
        mixed_precision_policy=policy,
    )


def _shard_on_cpu(plugin: Any) -> None:
    """Make accelerate run its FSDP2 path over a CPU (gloo) process group, as it does over GPUs.

    accelerate 1.15 sets `DistributedType.FSDP` only for accelerator process groups (state.py,
    `AcceleratorState.__init__`: MULTI_CPU is not in the list before `self.distributed_type = FSDP`), so on CPU
    it would silently train DDP. torch 2.15's `fully_shard` itself works over gloo (checked: 2 CPU processes
    shard, train, save and load a sharded DCP checkpoint, and gather the full state dict), and so does the rest
    of accelerate's FSDP2 path (`fsdp2_prepare_model` with the broadcast from the loading rank, `save_state` /
    `load_state` through `save_fsdp_model`, `get_state_dict`). The type lives in two shared states: PartialState's
    is read back into AcceleratorState's, so both are set.
    """
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType

    for shared in (PartialState._shared_state, AcceleratorState._shared_state):
        shared["distributed_type"] = DistributedType.FSDP
    AcceleratorState._shared_state["fsdp_plugin"] = plugin


def trains_on_gpu(distributed: Distributed) -> bool:
    """Whether this run's processes train on GPUs: the spec asks for them (`gpusPerNode`) and there are some.

    A spec without `gpusPerNode` trains on the CPU even beside a GPU: the pod did not ask the scheduler for one.
    """
    return distributed.gpus_per_node > 0 and torch.cuda.is_available()


def make_accelerator(precision: Precision, *, cpu: bool, shard: bool) -> Any:
    """An Accelerator training in `precision` (not checked against the hardware), FSDP2-sharded when `shard`.

    accelerate only forms a CPU process group (gloo) when told `cpu=True` (accelerate/state.py
    `_prepare_backend`: with LOCAL_RANK set and cpu False it looks for an accelerator and, finding none, silently
    runs each process alone).
    """
    from accelerate import Accelerator

    plugin = fsdp_plugin(precision) if shard else None
    plugins = {"fsdp_plugin": plugin} if plugin is not None else {}
    accelerator = Accelerator(mixed_precision=ACCELERATE_PRECISION[precision], cpu=cpu, **plugins)
    if cpu and plugin is not None:
        _shard_on_cpu(plugin)
    return accelerator


def build_accelerator(precision: Precision, distributed: Distributed) -> Any:
    """The Accelerator for this run: the precision the hardware allows; with several processes, FSDP2 shards for
    `fsdp` and accelerate wraps the model in DistributedDataParallel for `ddp` (from the launcher's environment)."""
    shard = world_size() > 1 and distributed.strategy == "fsdp"
    return make_accelerator(supported_precision(precision), cpu=not trains_on_gpu(distributed), shard=shard)


def prepare(accelerator: Any, model: Any, optimizer: Any) -> tuple[Any, Any]:
    """`accelerator.prepare(model, optimizer)`, with the optimizer's parameters mended under FSDP2.

    accelerate 1.15 maps the optimizer's parameters to the sharded ones by `data_ptr()`
    (`Accelerator._prepare_fsdp2`, `fsdp2_switch_optimizer_parameters`). On the ranks that built the model on the
    meta device (`cpu_ram_efficient_loading`) every parameter's data_ptr is 0, so every optimizer entry became
    the same parameter (checked: 1 distinct of 26 on rank 1 of a tiny Qwen2) and that rank would train one
    shard only, and its optimizer state would not fit the checkpoint's plan. The groups are rebuilt here by
    parameter name, which is what the mapping meant; the optimizer has no state yet, so nothing else moves.
    """
    from accelerate.utils.fsdp_utils import fsdp2_canonicalize_names

    names = {id(p): name for name, p in fsdp2_canonicalize_names(dict(model.named_parameters())).items()}
    groups = [[names[id(p)] for p in group["params"]] for group in optimizer.param_groups]
    model, optimizer = accelerator.prepare(model, optimizer)
    if accelerator.is_fsdp2:
        sharded = fsdp2_canonicalize_names(dict(model.named_parameters()))
        for group, wanted in zip(optimizer.optimizer.param_groups, groups, strict=True):
            group["params"] = [sharded[name] for name in wanted]
    return model, optimizer
