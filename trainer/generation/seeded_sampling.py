"""Sampling in a batch where every row draws from its own seeded random stream.

`model.generate(do_sample=True)` draws all rows from torch's one global generator, and transformers' continuous
batching (`generate_batch`, 5.23 `continuous_batching/model_runner.py` `_sample`) calls `torch.multinomial` on it
too, so what a row samples depends on which rows share its batch: a sample's seed would not regenerate it. Here
each row owns a `torch.Generator` seeded with its sample's seed; `next_tokens` applies temperature, top-k and top-p
(in vLLM's order) and draws each row's token from its row's generator. A sample then depends on its seed and its
prompt only (up to the float rounding a batch's padding may bring), as a vLLM request with its own seed does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def row_generators(seeds: Sequence[int], device: Any) -> list[torch.Generator]:
    """One random stream per row, seeded with the row's sample seed."""
    return [torch.Generator(device=device).manual_seed(seed) for seed in seeds]


def next_tokens(
    logits: torch.Tensor,
    generators: Sequence[torch.Generator],
    *,
    temperature: float,
    top_p: float = 1.0,
    top_k: int = -1,
) -> torch.Tensor:
    """Each row's next token: argmax when `temperature` is 0, else a draw from its own generator.

    A row's draw uses exactly one uniform from its generator per step, whatever rows it shares the batch with,
    so rows may leave the batch (finished) without changing what the others sample.
    """
    if logits.shape[0] != len(generators):
        raise ValueError(f"{logits.shape[0]} rows for {len(generators)} seeded streams")
    if temperature <= 0.0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        # As vLLM and transformers' TopPLogitsWarper: drop the least likely tokens whose mass stays
        # within 1 - top_p, always keeping the most likely one.
        ordered, order = torch.sort(logits, descending=False)
        cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
        drop = cumulative <= (1.0 - top_p)
        drop[..., -1:] = False
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    # Inverse-CDF sampling: one uniform per row from the row's own generator, then one batched search.
    # side="right" never lands on a token of probability 0 (the CDF does not rise there).
    cdf = logits.softmax(dim=-1).double().cumsum(dim=-1)
    uniforms = torch.cat([torch.rand(1, generator=g, device=g.device, dtype=torch.float64) for g in generators])
    targets = uniforms.to(cdf.device).unsqueeze(-1) * cdf[..., -1:]
    return torch.searchsorted(cdf, targets, side="right").clamp(max=cdf.shape[-1] - 1).squeeze(-1)
