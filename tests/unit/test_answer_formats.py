"""Reference answers read from a column in the dataset's own convention (benchmarks and traces share it)."""

from __future__ import annotations

import pytest

from cotlab.api.tracedataset import FieldMapping
from cotlab.trainer.curate.records import UnansweredTraceError, to_record
from cotlab.trainer.grading.answer_formats import read_answer


@pytest.mark.parametrize(
    ("value", "answer_format", "want"),
    [
        ("  \\frac{1}{2} ", "plain", "\\frac{1}{2}"),
        ("", "plain", None),
        ("She sells 9 eggs.\n#### 1,800", "gsm8k", "1800"),
        ("no marker", "gsm8k", None),
        ("so $\\boxed{\\frac{3}{4}}$ then \\boxed{7}", "boxed", "7"),
        ("unboxed 7", "boxed", None),
    ],
    ids=["plain", "plain-empty", "gsm8k-thousands", "gsm8k-missing", "boxed-last", "boxed-missing"],
)
def test_read_answer(value: str, answer_format: str, want: str | None) -> None:
    assert read_answer(value, answer_format) == want  # type: ignore[arg-type]


GSM8K = FieldMapping(problem="question", solution="answer", answer="answer", answer_format="gsm8k", stage=None)


def test_gsm8k_trace_takes_its_answer_from_the_solution_column() -> None:
    row = {"question": "Eggs?", "answer": "16 - 3 - 4 = <<16-3-4=9>>9\n#### 18", "idx": 0}
    record = to_record(row, "train.jsonl line 1", GSM8K, diversity_field=None)
    assert (record.id, record.problem, record.answer) == ("1", "Eggs?", "18")
    assert record.solution.endswith("#### 18")


def test_gsm8k_trace_without_marker_is_set_aside_by_line() -> None:
    with pytest.raises(
        UnansweredTraceError, match='train.jsonl line 7: no answer: field "answer" has none in answerFormat gsm8k'
    ):
        to_record({"question": "Eggs?", "answer": "nine"}, "train.jsonl line 7", GSM8K, diversity_field=None)
