"""Whether a FineTuneRun needs activation checkpointing: a memory estimate against the device it trains on.

Checkpointing recomputes each decoder layer's forward pass in backward (about a third more compute) to keep only
the layers' inputs; it pays only when the activations would not fit. `gradientCheckpointing` unset asks for
this decision (the finetune stage's `_needs_checkpointing`): the estimate without checkpointing is

- static: per trainable parameter 4 (fp32 weight) + 4 (gradient) + 8 (AdamW's two moments) bytes, plus the
  bf16/fp16 copy autocast caches for the forward pass (2); per frozen parameter (LoRA's base) its own size (4,
  or 2 held in bf16); divided over the processes when FSDP shards;
- activations: what autograd saves for backward per token, *measured* (`saved_bytes_per_token`): one decoder
  layer of the model's own config (its width, attention, MLP; LoRA attached the same way) runs forward on a
  short row on the CPU under the same autocast, a hook adds up the tensors saved for backward, and the
  difference between two lengths is the per-token cost (it excludes the weights' copies, which do not grow
  with the row); times the layers, times the longest micro-batch's tokens;
- the token loss: one chunk of fp32 logits, its gradient and the hidden states' gradient (loss.py);

and checkpointing is turned on when it exceeds `HEADROOM` of the device's memory (the GPU's total, or on a CPU
the pod's cgroup limit, else the machine's). Measured rather than tabulated, because the saved tensors depend on
the architecture, the attention kernel, LoRA's dropout and the transformers version. Measured with the pinned
versions under bf16 autocast, segment attention: Qwen2.5-0.5B's shape saves 13.9 GiB for an 8,192-token row (it
fits an H200 beside its 8.3 GiB of weights and optimizer state: off), the 7B shape 127 GiB at 16,384 tokens and
32B with LoRA 589 GiB (on; all seven targets, dropout 0.05). The probe takes 0.2 s for the 0.5B shape and 5 s
for 32B's layer on 2 cores.
tests/workload/test_memory_estimate.py holds the estimate against a whole model's saved bytes. When the probe
cannot run (a model type that cannot be built from its config here), the run checkpoints: the safe side.
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cotlab.api.finetunerun import LoraSettings
from cotlab.trainer.finetune.model import attach_lora, peft_base

logger = logging.getLogger(__name__)

HEADROOM = 0.85  # of the device's memory: the allocator's fragmentation and the CUDA context take the rest
PROBE_TOKENS = (64, 128)
OPTIMIZER_BYTES = 4 + 4 + 8  # fp32 weight, its gradient, AdamW's exp_avg and exp_avg_sq
LOW_PRECISION_COPY_BYTES = 2  # autocast's cached bf16/fp16 copy of each trainable weight


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a run needs without checkpointing, by part, and what the device offers."""

    static: int
    activations: int
    loss: int
    available: int

    @property
    def total(self) -> int:
        return self.static + self.activations + self.loss

    @property
    def needs_checkpointing(self) -> bool:
        return self.total > HEADROOM * self.available


def _saved_bytes(model: Any, tokens: int, autocast: torch.dtype | None) -> int:
    """Bytes of the distinct tensors autograd saves for backward in one forward pass over `tokens` tokens."""
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved[id(tensor)] = tensor.numel() * tensor.element_size()
        return tensor

    ids = torch.zeros((1, tokens), dtype=torch.long)
    with (
        torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
        torch.autocast("cpu", dtype=autocast or torch.bfloat16, enabled=autocast is not None),
    ):
        model.get_decoder()(input_ids=ids, position_ids=torch.arange(tokens)[None], use_cache=False)
    return sum(saved.values())


def saved_bytes_per_token(
    config: Any,
    *,
    lora: LoraSettings | None,
    autocast: torch.dtype | None,
    attn_implementation: str | None,
    dtype: torch.dtype = torch.float32,
) -> float:
    """Bytes autograd saves per token for the whole decoder without checkpointing, measured on one layer of
    `config` built in the base's `dtype` (a bf16 base keeps a bf16 residual stream; vocabulary shrunk: the
    embedding's output is counted, its table is not per token)."""
    from transformers import AutoModelForCausalLM

    probe_config = copy.deepcopy(config)
    probe_config.num_hidden_layers, probe_config.vocab_size = 1, 128
    probe_config.pad_token_id = None  # an embedding's padding index must lie inside the shrunk vocabulary
    if isinstance(getattr(probe_config, "layer_types", None), list):  # one entry per layer: keep the first
        probe_config.layer_types = probe_config.layer_types[:1]
    if attn_implementation and "flash" in attn_implementation:
        # Flash attention runs on GPUs only; sdpa's flash kernel on the CPU saves what it saves (q, k, v, the
        # output and the log-sum-exp per row), which is what the probe is for.
        attn_implementation = "sdpa"
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    model = AutoModelForCausalLM.from_config(probe_config, dtype=dtype, **extra)  # type: ignore[no-untyped-call]
    if lora is not None:
        model = attach_lora(model, lora)  # as the run attaches it, dropout too: it saves a mask per adapted input
        # The probe's one layer must see what the run's later layers see, an input that needs gradients (its
        # own would not: LoRA freezes the embeddings), or it saves less than they do (measured: 8% less).
        model.enable_input_require_grads()
    model.train()
    short, long = (_saved_bytes(model, n, autocast) for n in PROBE_TOKENS)
    per_layer_token = (long - short) / (PROBE_TOKENS[1] - PROBE_TOKENS[0])
    return float(per_layer_token * config.num_hidden_layers)


def static_bytes(model: Any, *, shards: int) -> int:
    """Weights, gradients and optimizer state of `model` (LoRA attached), per process when sharded `shards` ways."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() * p.element_size() for p in model.parameters() if not p.requires_grad)
    return int(trainable * (OPTIMIZER_BYTES + LOW_PRECISION_COPY_BYTES) + frozen) // max(shards, 1)


def loss_bytes(config: Any, tokens: int, *, trains_head: bool) -> int:
    """The token loss's peak: one chunk of fp32 logits, twice (the softmax and its gradient), the hidden states'
    gradient, and the projection's fp32 gradient when it trains (loss.py)."""
    from cotlab.trainer.finetune.loss import CHUNK_LOGITS

    head = config.vocab_size * config.hidden_size * 4 if trains_head else 0
    return int(2 * 4 * CHUNK_LOGITS + tokens * config.hidden_size * 4 + head)


def _cgroup_limit() -> int | None:
    """The memory limit of this process's cgroup (v2, else v1), None when there is none."""
    for path in (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes")):
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:  # v1 writes a huge number for "no limit"
            return int(text)
    return None


def device_memory(device: torch.device) -> int:
    """The memory a run on `device` may use: the GPU's total, or the pod's limit (else the machine's RAM)."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit = _cgroup_limit()
    return min(physical, limit) if limit else physical


def estimate_memory(
    model: Any,
    *,
    lora: LoraSettings | None,
    autocast: torch.dtype | None,
    tokens: int,
    shards: int,
    device: torch.device,
) -> MemoryEstimate | None:
    """The estimate for training `model` (LoRA attached) on micro-batches of up to `tokens` tokens; None when the
    probe could not run (the caller then checkpoints)."""
    base = peft_base(model)
    config = base.config
    try:
        per_token = saved_bytes_per_token(
            config,
            lora=lora,
            autocast=autocast,
            attn_implementation=config._attn_implementation,
            dtype=base.get_input_embeddings().weight.dtype,
        )
    except Exception:  # noqa: BLE001 - any failure of the probe means "no estimate", never a failed run
        logger.warning("no memory estimate: the probe layer could not run", exc_info=True)
        return None
    head = base.get_output_embeddings()
    return MemoryEstimate(
        static=static_bytes(model, shards=shards),
        activations=int(per_token * tokens),
        loss=loss_bytes(config, tokens, trains_head=head is not None and head.weight.requires_grad),
        available=device_memory(device),
    )
