"""Trace sources: every one-of member has a loader; rows map to records or fail naming the line and field."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from cotlab.api.tracedataset import SOURCE_KINDS, FieldMapping, TraceDatasetSpec
from cotlab.trainer.core.errors import InvalidInputError
from cotlab.trainer.curate.records import TraceRecord, problem_digest, to_record, to_records
from cotlab.trainer.curate.sources import LOADERS, source_kind
from cotlab.trainer.curate.sources.huggingface import matches

MATH_FIELDS = FieldMapping(problem="problem", solution="solution", answer=None, stage=None, difficulty="level")
WHERE = "traces.jsonl line 17"


def test_every_source_kind_has_a_loader() -> None:
    # As Kueue checks mandatory callbacks: a new one-of member without a loader fails here, not in a pod.
    assert sorted(LOADERS) == sorted(SOURCE_KINDS)
    assert all(callable(loader) for loader in LOADERS.values())


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ({"uri": "file:///t.jsonl"}, "uri"),
        ({"huggingface": {"repo": "nvidia/Nemotron-Math-HumanReasoning"}}, "huggingface"),
        ({"configMap": {"name": "traces", "key": "traces.jsonl"}}, "configMap"),
        ({"generate": {"teacher": {"hub": "Qwen/QwQ-32B-Preview"}, "problems": {"benchmark": "math"}}}, "generate"),
    ],
    ids=SOURCE_KINDS,
)
def test_source_kind(source: dict[str, Any], kind: str) -> None:
    assert source_kind(TraceDatasetSpec.model_validate({"source": source})) == kind


@pytest.mark.parametrize(
    ("row", "where", "want"),
    [
        ({"solution_type": "qwq_32b_preview"}, {"solution_type": ["qwq_32b_preview"]}, True),
        ({"solution_type": "human"}, {"solution_type": ["qwq_32b_preview", "r1"]}, False),
        ({"level": 5, "type": "Algebra"}, {"level": ["5"], "type": ["Algebra"]}, True),
        ({"level": 5}, {"level": ["5"], "type": ["Algebra"]}, False),
        ({"anything": 1}, {}, True),
    ],
    ids=["equal", "other-value", "number-as-text", "all-columns-must-match", "no-filter"],
)
def test_where_filter(row: dict[str, Any], where: dict[str, list[str]], want: bool) -> None:
    assert matches(row, where) is want


@pytest.mark.parametrize(
    ("row", "fields", "want"),
    [
        # MATH: no answer column, so the answer is the solution's last box; the id is the line number.
        (
            {"problem": "1+1?", "solution": "It is \\boxed{1} no, \\boxed{2}.", "level": "Level 1"},
            MATH_FIELDS,
            {"id": "17", "problem": "1+1?", "solution": "It is \\boxed{1} no, \\boxed{2}.", "answer": "2"}
            | {"difficulty": "Level 1"},
        ),
        # Nemotron-style: the answer column wins; numbers become text.
        (
            {"problem": "p", "solution": "s", "expected_answer": 18, "solution_type": "human", "uid": 4},
            FieldMapping(id="uid"),
            {"id": "4", "problem": "p", "solution": "s", "answer": "18", "stage": "human"},
        ),
        # An empty answer cell falls back to the solution's box.
        (
            {"problem": "p", "solution": "\\boxed{3}", "expected_answer": " "},
            FieldMapping(stage=None),
            {"id": "17", "problem": "p", "solution": "\\boxed{3}", "answer": "3"},
        ),
    ],
    ids=["math", "nemotron", "empty-answer-cell"],
)
def test_to_record(row: dict[str, Any], fields: FieldMapping, want: dict[str, Any]) -> None:
    want = {"problem_id": problem_digest(want["problem"])} | want
    assert to_record(row, WHERE, fields, diversity_field=None) == TraceRecord(where=WHERE, **want)


def test_problem_ids_name_the_problem_not_the_trace() -> None:
    human = {"problem": "What is 2+2? ", "solution": "4, \\boxed{4}", "expected_answer": "4", "solution_type": "h"}
    qwq = human | {"problem": "What is 2+2?", "solution": "Hmm. \\boxed{4}", "solution_type": "qwq"}
    a, b = (to_record(r, WHERE, FieldMapping(), diversity_field=None) for r in (human, qwq))
    assert a.problem_id == b.problem_id == hashlib.sha256(b"What is 2+2?").hexdigest()[:16]
    with_column = to_record(human | {"pid": 7}, WHERE, FieldMapping(problem_id="pid"), diversity_field=None)
    assert with_column.problem_id == "7"


@pytest.mark.parametrize(
    ("row", "fields", "diversity_field", "message"),
    [
        ({"problem": "p"}, MATH_FIELDS, None, 'traces.jsonl line 17: field "solution" missing; fields found: problem'),
        ({"problem": "p", "solution": ""}, MATH_FIELDS, None, 'traces.jsonl line 17: field "solution" missing'),
        ({"problem": "p", "solution": ["s"]}, MATH_FIELDS, None, 'line 17: field "solution": expected text, got list'),
        ({"problem": "p", "solution": "\\boxed{1}"}, FieldMapping(id="uid"), None, 'field "uid" \\(id\\) missing'),
        (
            {"problem": "p", "solution": "\\boxed{1}", "expected_answer": ["1"]},
            FieldMapping(stage=None),
            None,
            'line 17: field "expected_answer": Input should be a valid string',
        ),
        (
            {"problem": "p", "solution": "\\boxed{1}"},
            MATH_FIELDS,
            "type",
            'line 17: field "type" \\(spec.select.diversityField\\) missing',
        ),
        (
            {"problem": "p", "solution": "no box"},
            FieldMapping(),
            None,
            'line 17: no answer: field "expected_answer" missing and the solution has no',
        ),
    ],
    ids=["missing", "empty", "not-text", "id", "answer-not-text", "diversity-field", "no-answer"],
)
def test_bad_rows_name_line_and_field(
    row: dict[str, Any], fields: FieldMapping, diversity_field: str | None, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        to_record(row, WHERE, fields, diversity_field=diversity_field)


def test_unanswered_traces_are_set_aside_and_repeated_ids_refused() -> None:
    rows = [
        ("t.jsonl line 1", {"problem": "a", "solution": "\\boxed{1}", "id": "x"}),
        ("t.jsonl line 2", {"problem": "b", "solution": "there are $\\boxed{}$ primes", "id": "y"}),
        ("t.jsonl line 3", {"problem": "c", "solution": "\\boxed{3}", "id": "z"}),
    ]
    fields = FieldMapping(answer=None, id="id", stage=None)
    loaded = to_records(rows, fields)
    assert [r.id for r in loaded.records] == ["x", "z"] and loaded.unanswered == ["t.jsonl line 2"]
    with pytest.raises(InvalidInputError, match="t.jsonl line 4: id 'x' repeats t.jsonl line 1"):
        to_records([*rows, ("t.jsonl line 4", {"problem": "d", "solution": "\\boxed{4}", "id": "x"})], fields)
