"""Count trace tokens with the fine-tuned model's tokenizer (a hub repo, a directory, or a GGUF file)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from cotlab.api.models import ModelSource
from cotlab.trainer.core import pretrained

logger = logging.getLogger(__name__)

TokenizerLoader = Callable[[ModelSource], Any]
TOKENIZE_BATCH = 512
"""Texts per tokenizer call: the fast tokenizer parallelises within a call, and memory stays bounded."""


def load_tokenizer(source: ModelSource) -> Any:
    """The tokenizer of `spec.tokenizer`, located as the engines locate models."""
    return pretrained.load_tokenizer(source, field="spec.tokenizer")


def count_tokens(tokenizer: Any, texts: Sequence[str]) -> list[int]:
    """Tokens per text, without special tokens: the trace's own length, as the trainer's loss sees it."""
    counts: list[int] = []
    for start in range(0, len(texts), TOKENIZE_BATCH):
        batch = list(texts[start : start + TOKENIZE_BATCH])
        counts.extend(len(ids) for ids in tokenizer(batch, add_special_tokens=False)["input_ids"])
    return counts
