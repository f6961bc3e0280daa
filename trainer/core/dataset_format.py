"""One line of a curated dataset (`traces.jsonl`): written by the curate stage, read by the finetune stage."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ChatMessage(BaseModel):
    """One turn of a training conversation."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str


class TrainingExample(BaseModel):
    """A trace as a training example: chat messages, plus plain prompt/completion text for base-model prompting.

    Fine-tuning trains on `prompt` + `completion` when both are set (`format.prompt.style: completion`, exactly
    the text the evaluator sends a base model), else on `messages` through the tokenizer's chat template.
    """

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    problem: str | None = None
    answer: str | None = None
    stage: str | None = None
    messages: list[ChatMessage] = Field(min_length=2)
    tokens: int | None = Field(default=None, description="Tokens of the trace (assistant turn), when counted.")
    prompt: str | None = None
    completion: str | None = None
