"""Sampling in a transformers batch where every row draws from its own seeded random stream.

`model.generate(do_sample=True)` draws all rows from torch's one global generator, so what a row samples
depends on which rows share its batch and in what order: a sample's seed would not regenerate it. Here each row
owns a `torch.Generator` seeded with its sample's seed; a logits processor applies temperature, top-k and top-p
(in vLLM's order) and draws the row's token from its own generator, then leaves only that token finite, so the
greedy step that follows picks it. A sample then depends on its seed and its prompt only (up to the float
rounding a batch's padding may bring), as a vLLM request with its own seed does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


class SeededSampler:
    """A logits processor for `model.generate(do_sample=False, ...)` that samples row i with `seeds[i]`."""

    def __init__(self, seeds: Sequence[int], *, temperature: float, top_p: float, top_k: int, device: Any) -> None:
        if temperature <= 0.0:
            raise ValueError("SeededSampler samples; greedy decoding needs no sampler")
        self.generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]
        self.temperature, self.top_p, self.top_k = temperature, top_p, top_k

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if scores.shape[0] != len(self.generators):
            raise ValueError(f"{scores.shape[0]} rows for {len(self.generators)} seeded streams")
        logits = scores.float() / self.temperature
        if 0 < self.top_k < logits.shape[-1]:
            kth = torch.topk(logits, self.top_k, dim=-1).values[..., -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if self.top_p < 1.0:
            # As vLLM and transformers' TopPLogitsWarper: drop the least likely tokens whose mass stays
            # within 1 - top_p, always keeping the most likely one.
            ordered, order = torch.sort(logits, descending=False)
            cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
            drop = cumulative <= (1.0 - self.top_p)
            drop[..., -1:] = False
            logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
        # Inverse-CDF sampling: one uniform per row from the row's own generator, then one batched search.
        # side="right" never lands on a token of probability 0 (the CDF does not rise there).
        cdf = logits.softmax(dim=-1).double().cumsum(dim=-1)
        uniforms = torch.cat(
            [torch.rand(1, generator=g, device=g.device, dtype=torch.float64) for g in self.generators]
        )
        targets = uniforms.to(cdf.device).unsqueeze(-1) * cdf[..., -1:]
        chosen = torch.searchsorted(cdf, targets, side="right").clamp(max=cdf.shape[-1] - 1)
        forced = torch.full_like(scores, float("-inf"))
        return forced.scatter(-1, chosen.to(scores.device), 0.0)
