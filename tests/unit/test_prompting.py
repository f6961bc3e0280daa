"""Prompt rendering: the full expected strings, and template errors that name the field."""

from __future__ import annotations

from typing import Any

import pytest

from cotlab.api.models import Prompt, Sampling
from cotlab.trainer.core.chat_template import end_of_turn_ids
from cotlab.trainer.core.errors import InvalidSpecError
from cotlab.trainer.generation.prompting import fill_template, render_prompt, with_turn_end
from tests.workload.tiny_model import build_tokenizer


def test_default_template_keeps_the_literal_box() -> None:
    assert fill_template(Prompt().template, "What is {x}?") == (
        "Solve the following math problem. Make sure to put the answer (and only answer) inside \\boxed{}.\n\n"
        "What is {x}?"
    )


@pytest.mark.parametrize(
    ("prompt", "want"),
    [
        (Prompt(style="completion", template="Problem: {problem}\nSolution:"), "Problem: 1+1?\nSolution:"),
        (Prompt(style="completion", system="Be brief.", template="Q: {problem}"), "Be brief.\n\nQ: 1+1?"),
    ],
    ids=["plain", "with-system"],
)
def test_completion_style(prompt: Prompt, want: str) -> None:
    assert render_prompt("1+1?", prompt, tokenizer=None) == want


@pytest.mark.parametrize(
    "template", ["{problem} {answer}", "{problem} {0}", "{problem} }"], ids=["name", "index", "brace"]
)
def test_bad_template_is_an_invalid_spec(template: str) -> None:
    with pytest.raises(InvalidSpecError, match="spec.prompt.template"):
        fill_template(template, "x")


def test_chat_style_needs_a_chat_template() -> None:
    with pytest.raises(InvalidSpecError, match="use style: completion"):
        render_prompt("x", Prompt(), tokenizer=None)


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return build_tokenizer()  # Qwen2.5's base: EOS <|endoftext|>, turns end with <|im_end|>


@pytest.mark.parametrize(
    ("template", "specials", "want"),
    [
        (None, [], []),  # Qwen's: ChatML
        (
            "{% for m in messages %}<|start|>{{ m['content'] }}<|eot_id|>{% endfor %}",
            ["<|start|>", "<|eot_id|>"],
            ["<|eot_id|>"],
        ),
        ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n\n{% endfor %}", [], []),
        (
            "{% for m in messages %}{{ m['content'] }}"
            "{% if m['role'] == 'assistant' %}<|endoftext|>{% endif %}{% endfor %}",
            [],
            ["<|endoftext|>"],
        ),
    ],
    ids=["chatml", "llama3-like", "plain-text-turns", "ends-with-eos"],
)
def test_end_of_turn_ids(tokenizer: Any, template: str | None, specials: list[str], want: list[str]) -> None:
    tok = build_tokenizer()
    if specials:
        tok.add_special_tokens({"additional_special_tokens": specials})
    if template is not None:
        tok.chat_template = template
    expected = [tok.convert_tokens_to_ids(t) for t in want] if template else [tok.convert_tokens_to_ids("<|im_end|>")]
    assert end_of_turn_ids(tok) == expected


def test_chat_prompts_also_stop_at_the_turn_end(tokenizer: Any) -> None:
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    sampling = Sampling(stop_token_ids=[7])
    assert with_turn_end(sampling, Prompt(), tokenizer).stop_token_ids == [7, im_end]
    assert with_turn_end(sampling, Prompt(style="completion"), tokenizer) is sampling
    assert with_turn_end(Sampling(stop_token_ids=[im_end]), Prompt(), tokenizer).stop_token_ids == [im_end]


def test_an_empty_system_text_is_an_empty_system_turn(tokenizer: Any) -> None:
    """NeMo-Skills sends an empty system turn; without one, Qwen's template inserts its default system text."""
    template = "Solve: {problem}"
    assert render_prompt("1+1?", Prompt(system="", template=template), tokenizer) == (
        "<|im_start|>system\n<|im_end|>\n<|im_start|>user\nSolve: 1+1?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert render_prompt("1+1?", Prompt(template=template), tokenizer).startswith(
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
    )
    assert render_prompt("1+1?", Prompt(style="completion", system="", template=template), None) == "Solve: 1+1?"
