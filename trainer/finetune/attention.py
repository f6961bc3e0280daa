"""Attention over flattened micro-batches without flash attention: sdpa run once per example, causal, unmasked.

A flattened micro-batch is one row of concatenated examples whose `position_ids` restart at 0 (batches.py).
transformers 5.23 keeps such a row's examples apart by itself when no attention mask and no cache is passed:
`masking_utils._preprocess_mask_arguments` calls `find_packed_sequence_indices(position_ids)` and
`create_causal_mask` builds a block-causal mask from it, for sdpa and eager alike (checked there, and by
tests/workload/test_flattening.py). But that mask is dense, (total length)^2 for the whole row, and a dense mask
takes sdpa off its causal fast path: measured on 2 CPU cores, a tiny Qwen2 on 4 examples of 365-1922 tokens
trained 1.9x slower flattened with sdpa than padded, while each example alone with `is_causal` took a third of
the padded time.

`segment_attention`, registered as `SEGMENT_ATTENTION`, is that third: the linear layers see the flat row, and
attention runs transformers' own `sdpa_attention_forward` on each example's slice with `is_causal=True` and no
mask, so its cost is the sum of the examples' squared lengths, as with flash attention's varlen kernel. Its mask
function is flash attention's (`flash_attention_mask`: no mask when nothing is padded, else the 2D padding mask),
so no dense mask is ever built for it.

Where the examples start is a host-side fact: the collator knows it (`flatten_batch` passes `segment_bounds`, which
transformers hands through the decoder layers to the attention function, as it does flash attention's
`cu_seq_lens`). Reading it from `position_ids` instead is a `nonzero` and a copy to the host: on a GPU a sync in
every layer's forward (and again in its recomputation under checkpointing), which stalls the queue of launched
kernels each time. That reading is only the fallback for a caller that passes no bounds.
"""

from __future__ import annotations

from typing import Any

import torch

SEGMENT_ATTENTION = "cotlab_segment_sdpa"


def segment_bounds(position_ids: torch.Tensor | None, length: int) -> list[int]:
    """Where each example of a flattened row starts (its position id is 0), and the row's end."""
    if position_ids is None:
        return [0, length]
    starts = (position_ids[0] == 0).nonzero().flatten().tolist()
    if not starts or starts[0] != 0:
        starts = [0, *starts]
    return [*starts, length]


def segment_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Causal sdpa over each example of a flattened row; `(batch, length, heads, head_dim)` as transformers wants."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    kwargs.pop("is_causal", None)
    length = query.shape[2]
    if attention_mask is not None or query.shape[0] != 1 or key.shape[2] != length:
        # A padded batch or a cached decoding step: what sdpa does, with the padding and causal masks made 4D.
        causal = torch.ones(length, key.shape[2], dtype=torch.bool, device=query.device).tril(key.shape[2] - length)
        mask = causal[None, None] if attention_mask is None else causal[None, None] & attention_mask[:, None, None, :]
        return sdpa_attention_forward(module, query, key, value, mask, is_causal=False, **kwargs)
    bounds = kwargs.get("segment_bounds") or segment_bounds(kwargs.get("position_ids"), length)
    if bounds[-1] != length:
        raise ValueError(f"segment_bounds {bounds} do not end at the row's length {length}")
    parts = [
        sdpa_attention_forward(
            module, query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], None, is_causal=True, **kwargs
        )[0]
        for a, b in zip(bounds, bounds[1:], strict=False)
    ]
    return torch.cat(parts, dim=1), None


def register_segment_attention() -> str:
    """Make `SEGMENT_ATTENTION` a valid `attn_implementation` (idempotent); returns its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask

    # Eager even inside a compiled module (`training.torchCompile`): traced, its loop over the host-side bounds
    # would be specialised on each batch's split and recompiled for every new one; left out, the graphs around it
    # only see the bounds' count (checked on a tiny Qwen2: one recompilation, to dynamic shapes, over 8 batches
    # of 2 traces of 5-300 tokens).
    AttentionInterface.register(SEGMENT_ATTENTION, torch.compiler.disable(segment_attention))  # type: ignore[no-untyped-call]
    AttentionMaskInterface.register(SEGMENT_ATTENTION, flash_attention_mask)
    return SEGMENT_ATTENTION
