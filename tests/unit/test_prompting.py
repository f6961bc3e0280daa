"""Prompt rendering: the full expected strings, and template errors that name the field."""

from __future__ import annotations

import pytest

from cotlab.api.models import Prompt
from cotlab.trainer.core.errors import InvalidSpecError
from cotlab.trainer.generation.prompting import fill_template, render_prompt


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
