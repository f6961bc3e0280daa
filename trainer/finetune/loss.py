"""The training loss without the full logits: cross-entropy at the trained positions, the vocabulary projection
done a chunk of rows at a time.

A causal LM's own forward projects every position onto the whole vocabulary and its loss upcasts all of it to
fp32: for Qwen2.5 (152k tokens) and an 8,192-token row that is 2.5 GB of bf16 logits, 5 GB of fp32 copies, the
5 GB log-softmax saved for backward, and under mixed precision accelerate's `convert_outputs_to_fp32` casts the
returned logits once more (accelerator.py `prepare_model`, checked in 1.15). `install_token_loss` replaces the
model's forward for training only (labels given): the decoder's hidden states, the rows whose next token is
trained (`trained_rows`), and `_ChunkedLinearCrossEntropy`, which projects and takes the fp32 softmax a chunk of
rows at a time and computes each chunk's gradients right away, so one chunk's logits exist at a time and nothing is
recomputed in backward (the design of Liger's fused linear cross-entropy). No logits are returned.

Why not torch's own chunked `torch.nn.functional.linear_cross_entropy`: checked in the pinned 2.15, it returns
the summed loss in the input dtype, so a bf16 run's loss is a bf16 sum (4,096 rows: 123,904 against 122,121 in
fp32, 1.5% off, and the reported loss would move by whole bf16 steps); and this code also runs on the lent GPU
machine's torch 2.11.

Only model types whose logits are exactly `lm_head(final hidden state)` get it (`TOKEN_LOSS_MODEL_TYPES`): others
scale or cap their logits (Gemma's softcapping, Cohere's logit_scale, Granite's logits_scaling) or add router
losses (MoE), and keep their own forward. tests/workload/test_token_loss.py checks losses and gradients against
the model's own loss for each listed type, padded and flattened, full and LoRA.
"""

from __future__ import annotations

import logging
import types
from typing import Any

import torch

from cotlab.trainer.finetune.data import IGNORE_INDEX

logger = logging.getLogger(__name__)

TOKEN_LOSS_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})
CHUNK_LOGITS = 2**26  # elements of one chunk's logits (256 MiB in fp32; 441 rows of Qwen2.5's vocabulary)


def trained_rows(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The positions whose next token is trained, as a boolean (batch, length) mask, and those tokens.

    Position t predicts token t+1, so the mask is the labels shifted left by one; the last position predicts
    nothing. (The model's own loss pads and shifts the same way: loss_utils.ForCausalLMLoss.)
    """
    following = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)
    mask = following != IGNORE_INDEX
    return mask, following[mask]


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of `hidden @ weight.T` against `targets`, a chunk of rows at a time; each chunk's
    gradients are computed in the forward pass, so only one chunk's logits are ever held (Liger's and torch's
    fused linear cross-entropy do the same). The softmax is taken in fp32, as the model's own loss takes it."""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, rows: int) -> Any:
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_hidden = torch.empty_like(hidden)
        grad_weight = None  # a frozen projection (LoRA) gets none
        if ctx.needs_input_grad[1]:
            grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
        for start in range(0, hidden.shape[0], rows):
            h, t = hidden[start : start + rows], targets[start : start + rows]
            logits = (h @ weight.T).float()
            log_norm = torch.logsumexp(logits, dim=-1)
            total += (log_norm - logits.gather(1, t[:, None]).squeeze(1)).sum()
            grad = logits.sub_(log_norm[:, None]).exp_()  # the softmax, in place of the logits
            grad[torch.arange(t.shape[0], device=t.device), t] -= 1.0
            grad = grad.to(hidden.dtype)
            grad_hidden[start : start + rows] = grad @ weight
            if grad_weight is not None:
                # add_ upcasts inside its kernel: the same sum as adding a `.float()` copy, bit for bit (checked),
                # without writing and reading an fp32 copy of a vocabulary-sized matrix for every chunk.
                grad_weight.add_(grad.T @ h)
        ctx.save_for_backward(grad_hidden, grad_weight if grad_weight is not None else torch.empty(0))
        ctx.weight_dtype = weight.dtype
        return total

    @staticmethod
    def backward(ctx: Any, grad_total: torch.Tensor) -> Any:
        grad_hidden, grad_weight = ctx.saved_tensors
        weight_grad = (grad_weight * grad_total).to(ctx.weight_dtype) if ctx.needs_input_grad[1] else None
        return grad_hidden * grad_total.to(grad_hidden.dtype), weight_grad, None, None


def summed_token_loss(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum over rows of cross-entropy(hidden @ weight.T, targets) in fp32, never holding all rows' logits."""
    rows = max(1, CHUNK_LOGITS // weight.shape[0])
    return _ChunkedLinearCrossEntropy.apply(hidden, weight, targets, rows)  # type: ignore[no-any-return]


def _projection_inputs(hidden: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`hidden` and `weight` in the dtype the model's `lm_head` would multiply them in (autocast's, if on)."""
    device_type = hidden.device.type
    if torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)
        return hidden.to(dtype), weight.to(dtype)
    return hidden, weight.to(hidden.dtype)


def _token_loss_forward(
    self: Any,
    input_ids: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    num_items_in_batch: torch.Tensor | int | None = None,
    **kwargs: Any,
) -> Any:
    """The training forward pass: the loss over trained tokens (summed, divided by `num_items_in_batch`, else by
    the trained tokens here), without logits. Without labels it is the model's own forward."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    if labels is None:
        return type(self).forward(self, input_ids=input_ids, num_items_in_batch=num_items_in_batch, **kwargs)
    for unused in ("return_dict", "output_attentions", "output_hidden_states", "logits_to_keep"):
        kwargs.pop(unused, None)  # PEFT passes some of them along; this forward returns neither
    hidden = self.get_decoder()(input_ids=input_ids, **kwargs).last_hidden_state
    mask, targets = trained_rows(labels.to(hidden.device))
    rows, weight = _projection_inputs(hidden[mask], self.get_output_embeddings().weight)
    # A named range, so a profile can say what share of a step the loss takes (bench/finetune_mfu.py --profile).
    with torch.autocast(hidden.device.type, enabled=False), torch.profiler.record_function("cotlab.token_loss"):
        total = summed_token_loss(rows, weight, targets)
    count = num_items_in_batch if num_items_in_batch is not None else max(int(targets.numel()), 1)
    return CausalLMOutputWithPast(loss=total / count)


def supports_token_loss(model: Any) -> bool:
    """Whether the model's logits are exactly its output projection of the decoder's last hidden state."""
    head = model.get_output_embeddings()
    return (
        getattr(model.config, "model_type", None) in TOKEN_LOSS_MODEL_TYPES
        and isinstance(head, torch.nn.Linear)
        and head.bias is None
    )


def install_token_loss(model: Any) -> bool:
    """Give `model` (a transformers causal LM, before LoRA and accelerate wrap it) the chunked training loss;
    returns whether it did. Called on an unsupported model it leaves the model's own forward."""
    if not supports_token_loss(model):
        logger.info(
            "training loss: the model's own (full logits), its type is not known to project plainly",
            extra={"model_type": getattr(model.config, "model_type", None)},
        )
        return False
    model.forward = types.MethodType(_token_loss_forward, model)
    return True
