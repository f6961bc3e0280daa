"""Render a problem into model input with the spec's `Prompt`: a chat turn, or plain text for base models."""

from __future__ import annotations

from typing import Any

from cotlab.api.models import Prompt, Sampling
from cotlab.trainer.core.chat_template import end_of_turn_ids
from cotlab.trainer.core.errors import InvalidSpecError


def fill_template(template: str, problem: str) -> str:
    """`template` with `{problem}` filled in; `{{`/`}}` are literal braces (the default's `\\boxed{{}}`)."""
    try:
        return template.format(problem=problem)
    except (KeyError, IndexError) as exc:
        raise InvalidSpecError(
            f"spec.prompt.template: unknown placeholder {{{exc.args[0]}}}; only {{problem}} is filled in,"
            " write other braces doubled ({{ and }})"
        ) from None
    except ValueError as exc:
        raise InvalidSpecError(f"spec.prompt.template: {exc}; write literal braces doubled ({{{{ and }}}})") from None


def render_prompt(problem: str, prompt: Prompt, tokenizer: Any) -> str:
    """The text the engine generates from: the chat template applied (`chat`) or system + template (`completion`)."""
    user = fill_template(prompt.template, problem)
    if prompt.style == "completion":
        return f"{prompt.system}\n\n{user}" if prompt.system else user
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise InvalidSpecError(
            "spec.prompt.style: chat needs a tokenizer with a chat template, and this model's has none;"
            " use style: completion for base models"
        )
    # An empty system text is a system turn all the same (NeMo-Skills' prompts send one): left out, templates
    # such as Qwen's insert their own default ("You are Qwen, created by Alibaba Cloud. ...").
    messages = [{"role": "system", "content": prompt.system}] if prompt.system is not None else []
    messages.append({"role": "user", "content": user})
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return str(text)


def with_turn_end(sampling: Sampling, prompt: Prompt, tokenizer: Any) -> Sampling:
    """`sampling` that also stops on the chat template's end-of-turn token when the prompt is a chat turn.

    A model fine-tuned on chat-formatted traces answers in the template's turn and ends it with the template's
    end-of-turn token (`<|im_end|>`), which need not be the model's EOS: Qwen2.5's base models stop on
    `<|endoftext|>` only. Plain-text prompts (`completion`) have no turns to end.
    """
    if prompt.style != "chat":
        return sampling
    extra = [i for i in end_of_turn_ids(tokenizer) if i not in sampling.stop_token_ids]
    return sampling.model_copy(update={"stop_token_ids": [*sampling.stop_token_ids, *extra]}) if extra else sampling
