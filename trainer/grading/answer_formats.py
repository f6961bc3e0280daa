"""Reading a reference answer out of a dataset column, whatever convention the dataset uses."""

from __future__ import annotations

from cotlab.api.benchmarks import AnswerFormat
from cotlab.trainer.grading.grader import extract_answer


def read_answer(value: str, answer_format: AnswerFormat) -> str | None:
    """The answer in `value`: as is ("plain"), after GSM8K's `####` ("gsm8k", commas dropped), or its last
    `\\boxed{}` ("boxed"); None when the convention's marker is missing."""
    if answer_format == "gsm8k":
        if "####" not in value:
            return None
        return value.rsplit("####", 1)[1].strip().replace(",", "") or None
    if answer_format == "boxed":
        return extract_answer(value)
    return value.strip() or None
