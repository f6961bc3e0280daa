"""Training examples: parse the curated dataset's lines and tokenize each with the loss on the assistant turn only.

The assistant span is found on text, not on token ids: the prompt (every message but the last, rendered with
`add_generation_prompt=True`) must be a prefix of the full conversation, and the rest is the completion. The two
parts are tokenized separately and concatenated, which is exactly what the model sees at inference (a tokenized
prompt, then generated tokens). Labels cover the completion up to and including its last end-of-turn token
(`<|im_end|>`), so the model learns to stop; what a template puts after it (ChatML's newline) is never generated,
so it is not trained. Nothing here compares token ids with the pad id: padding is added later, by length.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from cotlab.trainer.core.chat_template import end_of_turn_ids as end_of_turn_tokens
from cotlab.trainer.core.dataset_format import TrainingExample
from cotlab.trainer.core.errors import InvalidInputError, InvalidSpecError, TraceTooLongError

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100  # the label torch's cross-entropy (and transformers' losses) skip
MAX_NAMED = 5  # too-long examples named in the error message; the count covers the rest


@dataclass(frozen=True)
class TokenizedExample:
    """Token ids and labels of one example; `labels[i]` is `IGNORE_INDEX` outside the trained span."""

    id: str
    input_ids: tuple[int, ...]
    labels: tuple[int, ...]

    @property
    def length(self) -> int:
        return len(self.input_ids)


def parse_examples(data: bytes, uri: str) -> list[TrainingExample]:
    """The examples of a JSONL dataset; a bad line is named by number, as is a conversation not ending in a reply."""
    examples: list[TrainingExample] = []
    for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            example = TrainingExample.model_validate(json.loads(line))
        except (json.JSONDecodeError, ValidationError) as exc:
            raise InvalidInputError(f"{uri} line {number}: not a training example: {exc}") from exc
        if example.messages[-1].role != "assistant":
            raise InvalidInputError(
                f"{uri} line {number} (id {example.id!r}): the last message must be the assistant's, got"
                f" {example.messages[-1].role!r}"
            )
        examples.append(example)
    if not examples:
        raise InvalidInputError(f"{uri}: the dataset has no examples")
    return examples


def assistant_labels(prompt_ids: Sequence[int], completion_ids: Sequence[int], end_ids: Collection[int]) -> list[int]:
    """Labels for `prompt_ids + completion_ids`: the completion through its last end-of-turn token, the rest ignored.

    Without an end-of-turn token in the completion (a template that ends turns with plain text) the whole
    completion is trained.
    """
    last_end = max((i for i, t in enumerate(completion_ids) if t in end_ids), default=len(completion_ids) - 1)
    after = len(completion_ids) - (last_end + 1)
    return [IGNORE_INDEX] * len(prompt_ids) + list(completion_ids[: last_end + 1]) + [IGNORE_INDEX] * after


def tokenize_example(tokenizer: Any, example: TrainingExample, end_ids: Collection[int]) -> TokenizedExample:
    """Tokenize `example` as the model will be prompted, and label only the reply it should learn to give."""
    if example.prompt is not None and example.completion is not None:
        return _tokenize_completion(tokenizer, example)
    messages = [m.model_dump() for m in example.messages]
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    if not full.startswith(prompt):
        raise InvalidInputError(
            f"example {example.id!r}: the chat template renders the prompt differently alone than inside the"
            " conversation, so the assistant turn cannot be located; use a template without history rewriting"
        )
    # The template already holds any BOS; add_special_tokens would add a second one.
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(full[len(prompt) :], add_special_tokens=False)["input_ids"]
    labels = assistant_labels(prompt_ids, completion_ids, end_ids)
    return TokenizedExample(example.id, tuple(prompt_ids) + tuple(completion_ids), tuple(labels))


def _tokenize_completion(tokenizer: Any, example: TrainingExample) -> TokenizedExample:
    """Plain text for a base model: BOS (if the tokenizer has one) + prompt, then completion + EOS, trained."""
    assert example.prompt is not None and example.completion is not None
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    prompt_ids = bos + tokenizer(example.prompt, add_special_tokens=False)["input_ids"]
    # EOS is trained: a base model that never sees it after an answer does not learn to stop.
    completion_ids = tokenizer(example.completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    labels = [IGNORE_INDEX] * len(prompt_ids) + completion_ids
    return TokenizedExample(example.id, tuple(prompt_ids) + tuple(completion_ids), tuple(labels))


def end_of_turn_ids(tokenizer: Any, generation_eos: Sequence[int], *, chat: bool = True) -> frozenset[int]:
    """The token ids that end an assistant turn: the tokenizer's EOS, the model's generation EOS ids and, for
    chat-formatted examples, the chat template's end-of-turn token (`<|im_end|>` for Qwen, whose base models'
    EOS is `<|endoftext|>`). Labels stop at the last of them, and the saved model's generation config lists them,
    so that generation stops where training taught the model to."""
    ids = [tokenizer.eos_token_id, *generation_eos]
    if chat:
        ids += end_of_turn_tokens(tokenizer)
    return frozenset(i for i in ids if i is not None)


def trains_on_chat(examples: Sequence[TrainingExample]) -> bool:
    """Whether some example goes through the chat template (not the plain prompt/completion text)."""
    return any(e.prompt is None or e.completion is None for e in examples)


def tokenize_dataset(
    tokenizer: Any, examples: Sequence[TrainingExample], *, max_length: int, end_ids: Collection[int]
) -> list[TokenizedExample]:
    """Tokenize every example; refuse the dataset (TraceTooLongError) if any is longer than `max_length`."""
    if trains_on_chat(examples) and not getattr(tokenizer, "chat_template", None):
        raise InvalidSpecError("spec.baseModel: its tokenizer has no chat template; set spec.baseModel.tokenizer")
    tokenized = [tokenize_example(tokenizer, e, end_ids) for e in examples]
    too_long = [t for t in tokenized if t.length > max_length]
    if too_long:
        named = ", ".join(f"{t.id!r} ({t.length} tokens)" for t in too_long[:MAX_NAMED])
        more = f" and {len(too_long) - MAX_NAMED} more" if len(too_long) > MAX_NAMED else ""
        raise TraceTooLongError(
            f"{len(too_long)} example(s) longer than spec.training.maxSeqLength {max_length}: {named}{more};"
            " raise maxSeqLength or filter the TraceDataset by length (traces are never cut)"
        )
    if not any(label != IGNORE_INDEX for t in tokenized for label in t.labels):
        raise InvalidInputError("the dataset has no assistant tokens to train on")
    return tokenized
