"""What a tokenizer's chat template says about turns: the token that ends an assistant's turn.

A base model fine-tuned on chat-formatted traces learns to end its reply with the template's end-of-turn token
(`<|im_end|>` in ChatML, Qwen's template), which is not the base model's EOS (`<|endoftext|>` for Qwen2.5's base
models). Generation must stop there, or a sample runs on into an invented next turn.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

_PROBE = "cotlab-end-of-turn-probe"


def special_token_ids(tokenizer: Any) -> set[int]:
    """Ids of the tokenizer's special tokens: the named ones and every added token marked special."""
    ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    for token_id, token in (getattr(tokenizer, "added_tokens_decoder", None) or {}).items():
        if getattr(token, "special", False):
            ids.add(int(token_id))
    return ids


def end_of_turn_ids(tokenizer: Any) -> list[int]:
    """The special token the chat template puts right after an assistant's reply (`[]` without a chat template,
    or when the template ends a turn with plain text).

    Found by rendering a short conversation whose reply is a probe string and reading the first special token
    after it, so it works for any template: ChatML's `<|im_end|>`, Llama 3's `<|eot_id|>`, Gemma's
    `<end_of_turn>`, a template that ends turns with EOS.
    """
    if not getattr(tokenizer, "chat_template", None):
        return []
    messages = [{"role": "user", "content": "1 + 1?"}, {"role": "assistant", "content": _PROBE}]
    try:
        text = str(tokenizer.apply_chat_template(messages, tokenize=False))
    except Exception as exc:  # noqa: BLE001 - a template that refuses this conversation has no usable answer
        logger.warning("could not render the chat template to find its end of turn", extra={"error": str(exc)})
        return []
    if _PROBE not in text:
        return []
    after = text.split(_PROBE, 1)[1]
    special = special_token_ids(tokenizer)
    for token_id in tokenizer(after, add_special_tokens=False)["input_ids"]:
        if token_id in special:
            return [int(token_id)]
    return []
