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


CANDIDATES = 256
"""Tokens the fast path looks at: top-p's nucleus at the temperatures people sample with lies well within them."""


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
    so rows may leave the batch (finished) without changing what the others sample. Inverse-CDF sampling over the
    kept tokens in vocabulary order: side="right" never lands on a token of probability 0.
    """
    if logits.shape[0] != len(generators):
        raise ValueError(f"{logits.shape[0]} rows for {len(generators)} seeded streams")
    if temperature <= 0.0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    uniforms = torch.cat([torch.rand(1, generator=g, device=g.device, dtype=torch.float64) for g in generators])
    uniforms = uniforms.to(logits.device)
    vocab = logits.shape[-1]
    limit = top_k if 0 < top_k < vocab else vocab
    if top_p >= 1.0 and limit == vocab or limit > CANDIDATES and limit < vocab:
        return _full_vocabulary(logits, uniforms, top_p=top_p, top_k=top_k)
    # Sorting the whole vocabulary (49k tokens for SmolLM2, 152k for Qwen) costs more than the model's step on a
    # CPU; the nucleus lives among the most likely tokens, so take those (topk) and fall back per row when their
    # mass does not reach top_p.
    values, ids = torch.topk(logits, min(limit, CANDIDATES), dim=-1)  # most likely first
    # Normalised over what top-k keeps: all of it (limit <= CANDIDATES) or the whole vocabulary.
    total = torch.logsumexp(values if limit <= CANDIDATES else logits, dim=-1, keepdim=True)
    probs = (values - total).exp()
    cumulative = probs.cumsum(dim=-1)
    # As vLLM and transformers' TopPLogitsWarper: drop the least likely tokens whose mass stays within 1 - top_p
    # (a token goes when the mass of the more likely ones reaches top_p), always keeping the most likely one.
    keep = (cumulative - probs < top_p) if top_p < 1.0 else torch.ones_like(probs, dtype=torch.bool)
    keep[..., 0] = True
    probs = probs.masked_fill(~keep, 0.0)
    by_id, order = ids.sort(dim=-1)  # vocabulary order, as the full-vocabulary CDF runs
    cdf = probs.gather(-1, order).double().cumsum(dim=-1)
    chosen = torch.searchsorted(cdf, uniforms.unsqueeze(-1) * cdf[..., -1:], side="right")
    tokens = by_id.gather(-1, chosen.clamp(max=cdf.shape[-1] - 1)).squeeze(-1)
    # Past the candidates every token has at least their mass before it: all dropped once that reaches top_p.
    short = cumulative[..., -1] < top_p
    if limit > CANDIDATES and bool(short.any()):  # the nucleus reaches past the candidates: the whole vocabulary
        rows = short.nonzero().squeeze(-1)
        tokens[rows] = _full_vocabulary(logits[rows], uniforms[rows], top_p=top_p, top_k=top_k)
    return tokens


def _full_vocabulary(logits: torch.Tensor, uniforms: torch.Tensor, *, top_p: float, top_k: int) -> torch.Tensor:
    """Temperature-scaled `logits` filtered by top-k then top-p over the whole vocabulary, one draw per row."""
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        ordered, order = torch.sort(logits, descending=False)
        cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
        drop = cumulative <= (1.0 - top_p)
        drop[..., -1:] = False
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    cdf = logits.softmax(dim=-1).double().cumsum(dim=-1)
    chosen = torch.searchsorted(cdf, uniforms.unsqueeze(-1) * cdf[..., -1:], side="right")
    return chosen.clamp(max=cdf.shape[-1] - 1).squeeze(-1)
