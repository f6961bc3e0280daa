"""The model side of fine-tuning: load the base, attach LoRA, group parameters for AdamW, save the result.

What trains is loaded in fp32 whatever `training.precision` says: mixed precision autocasts the forward pass and
keeps fp32 master weights, so small updates are not lost to bf16 rounding. What does not train, a LoRA run's
frozen base, is held in bf16 when the run trains in bf16 (`base_dtype`), as PEFT and TRL users load it: its
matmuls ran in bf16 under autocast anyway, and it takes half the memory (Qwen2.5-32B: 66 GB, not 131, so it
fits one H200). The saved model is cast to the training precision. LoRA is merged into the base before saving,
so the evaluate stage loads a plain model directory; the adapter alone is saved too.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Collection
from pathlib import Path
from typing import Any

import torch

from cotlab.api.finetunerun import LoraSettings, Precision
from cotlab.api.models import ModelSource
from cotlab.trainer.core.errors import InvalidSpecError
from cotlab.trainer.core.pretrained import pretrained_kwargs
from cotlab.trainer.finetune.loss import install_token_loss

logger = logging.getLogger(__name__)

SAVE_DTYPE: dict[Precision, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
NO_DECAY_MARKERS = ("bias", "norm")  # biases and normalisation scales are not regularised towards zero


def base_dtype(*, lora: bool, mixed_precision: str) -> torch.dtype:
    """The dtype to load the base in: fp32 (master weights), or bf16 for a LoRA run's frozen base trained in bf16.

    `mixed_precision` is the Accelerator's ("bf16", "fp16", "no"). Not fp16: its range is narrow for a residual
    stream kept in it, where autocast keeps fp32. The adapters stay fp32 either way (PEFT 0.21's
    `autocast_adapter_dtype`; checked: adapters fp32, base bf16, gradients fp32 under CPU autocast and without).
    """
    return torch.bfloat16 if lora and mixed_precision == "bf16" else torch.float32


def load_base_model(
    source: ModelSource,
    *,
    attn_implementation: str | None = None,
    weights: bool = True,
    dtype: torch.dtype = torch.float32,
) -> Any:
    """The base causal LM in `dtype` (GGUF files are dequantised), ready to train.

    `weights=False` (the ranks of an FSDP run that do not load): the parameters stay on the meta device, nothing
    is read or allocated for them, and accelerate's FSDP2 preparation (`cpu_ram_efficient_loading`) broadcasts
    each shard from the loading rank. Buffers stay real: the rotary embedding's `inv_freq` is not in the
    checkpoint, so it is never broadcast (accelerate keeps each rank's own non-persistent buffers).
    transformers 5.23 alone would not do this: under FSDP it only skips initialising weights on the other ranks
    (`modeling_utils`, `is_local_dist_rank_0`), and still reads the whole checkpoint on each of them.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, GgufConfig

    location, kwargs = pretrained_kwargs(source)
    if not weights and "gguf_file" not in kwargs:
        from accelerate import init_empty_weights

        config = AutoConfig.from_pretrained(location, **kwargs)
        extra = {"attn_implementation": attn_implementation} if attn_implementation is not None else {}
        with init_empty_weights(include_buffers=False):
            model = AutoModelForCausalLM.from_config(config, dtype=dtype, **extra)  # type: ignore[no-untyped-call]
        model.tie_weights()  # from_config leaves a tied lm_head separate on meta; the loaded model shares it
        logger.info("built the base model on the meta device", extra={"model": location})
        return model
    if "gguf_file" in kwargs:
        # transformers may keep GGUF weights packed (frozen, and refused by save_pretrained): unpack them all.
        kwargs["quantization_config"] = GgufConfig(dequantize=True)
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    model = AutoModelForCausalLM.from_pretrained(location, dtype=dtype, **kwargs)
    logger.info(
        "loaded the base model", extra={"model": location, "gguf_file": kwargs.get("gguf_file"), "dtype": str(dtype)}
    )
    return model


def linear_module_names(model: torch.nn.Module) -> list[str]:
    """The distinct last name components of the model's linear layers (what LoRA target_modules match)."""
    return sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)})


def peft_base(model: Any) -> Any:
    """The transformers model under `model`'s PEFT wrapper, or `model` itself when it has none (no LoRA)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def lora_targets(model: torch.nn.Module, requested: list[str]) -> list[str]:
    """The requested target modules the model has; none at all is a spec error listing what it has."""
    available = linear_module_names(model)
    present = [name for name in requested if name in available]
    if not present:
        raise InvalidSpecError(
            f"spec.lora.targetModules: none of {requested} is a linear module of this model;"
            f" its linear modules are {available}"
        )
    missing = sorted(set(requested) - set(present))
    if missing:
        logger.warning("LoRA target modules absent from the model are skipped", extra={"missing": missing})
    return present


def attach_lora(model: Any, lora: LoraSettings) -> Any:
    """`model` wrapped by peft with `lora`'s adapters on the target modules it has."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora_targets(model, list(lora.target_modules)),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def prepare_for_training(model: Any, *, lora: LoraSettings | None, token_loss: bool = True) -> Any:
    """The model to train: LoRA-wrapped when `lora` is set, and with loss.py's chunked token loss where the model
    type allows (`token_loss=False`: its own, for comparisons). Checkpointing is `enable_checkpointing`'s."""
    model.config.use_cache = False  # the KV cache is for generation; with checkpointing it is also wrong
    if token_loss:
        install_token_loss(model)
    if lora is None:
        return model
    peft_model = attach_lora(model, lora)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    targets = peft_model.peft_config["default"].target_modules
    logger.info("attached LoRA adapters", extra={"targets": targets, "trainable": trainable})
    return peft_model


def enable_checkpointing(model: Any) -> None:
    """Activation checkpointing of each decoder layer (`model` prepared, LoRA attached or not)."""
    base = peft_base(model)
    base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    if base is not model:
        # Frozen embeddings give checkpointed blocks inputs without grad; this keeps the adapters' grads flowing.
        base.enable_input_require_grads()


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups over the trainable parameters: decay on weight matrices, none on biases and norms."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        exempt = param.ndim < 2 or any(marker in name.lower() for marker in NO_DECAY_MARKERS)
        (no_decay if exempt else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: torch.nn.Module, *, learning_rate: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over `parameter_groups`, fused: one kernel updates every parameter, where torch's default (foreach)
    makes eight passes over all of them (checked in 2.15's `_multi_tensor_adam`). TRL's default since torch 2.8
    too (`adamw_torch_fused`).

    Measured on 2 CPU cores, 50M fp32 parameters: 32 ms a step against 155 ms, the parameters 5e-8 (relative)
    apart. Checked in torch 2.15: the fused kernel exists for CPU and CUDA, FSDP2's DTensors dispatch it to their
    shards (`_pointwise_ops`: `_fused_adamw_`), and the device check runs at the first step, so parameters still
    on the meta device (FSDP's non-loading ranks) are fine here. A checkpoint holds the groups' `fused` flag
    (checked: loading a foreach optimizer's state sets it back to None), so a run resumed from a checkpoint written
    before this goes on with the foreach optimizer.
    """
    groups = parameter_groups(model, weight_decay)
    return torch.optim.AdamW(groups, lr=learning_rate, fused=True)


def save_model(
    model: Any,
    tokenizer: Any,
    *,
    output: Path,
    precision: Precision,
    gathered: dict[str, torch.Tensor] | None = None,
    source: ModelSource | None = None,
    eos_token_ids: Collection[int] = (),
) -> Path:
    """Save the trained model (LoRA merged into the base) and tokenizer to `output/model`; the adapter to `adapter`.

    `eos_token_ids` (the turn ends it was trained on, `<|im_end|>` included for chat traces) go into the saved
    generation config, so any engine that honours it (vLLM, transformers) stops where the model learned to.

    `model` is the unwrapped model. With one process its own tensors are saved and LoRA is merged in place.
    Sharded over several, `gathered` holds its full weights (gathered on this, the main, process): full weights
    are saved from it, and LoRA is merged into a fresh host copy of the base (`source`).
    """
    model_dir = output / "model"
    shutil.rmtree(model_dir, ignore_errors=True)  # a previous attempt's partial output must not enter the digest
    dtype = SAVE_DTYPE[precision]
    state_dict: dict[str, torch.Tensor] | None = None
    if hasattr(model, "merge_and_unload"):
        adapter_dir = output / "adapter"
        shutil.rmtree(adapter_dir, ignore_errors=True)
        model.save_pretrained(adapter_dir, state_dict=gathered)  # peft keeps only the adapter's weights
        if gathered is not None:
            from peft import PeftModel

            assert source is not None, "a sharded LoRA model is merged into a reloaded base"
            model = PeftModel.from_pretrained(load_base_model(source), adapter_dir)
        # In the base's dtype: PEFT adds the fp32 delta in place, and torch sums in fp32 and rounds once (checked:
        # the same adapters merged into a bf16 base give bit for bit the bf16 cast of the fp32 merge).
        model = model.merge_and_unload()
    elif gathered is not None:
        state_dict = {name: tensor.to(dtype) for name, tensor in gathered.items()}
    model.config.use_cache = True
    if eos_token_ids:
        known = model.generation_config.eos_token_id
        known = known if isinstance(known, list) else [known]
        model.generation_config.eos_token_id = sorted({*(i for i in known if i is not None), *eos_token_ids})
    if state_dict is None:
        model.to(dtype)
    model.save_pretrained(model_dir, state_dict=state_dict)
    tokenizer.save_pretrained(model_dir)
    logger.info("saved the fine-tuned model", extra={"path": str(model_dir)})
    return model_dir
