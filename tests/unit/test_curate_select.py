"""Curation's pure parts: filters, selection strategies, trace formatting and stats, with hand-worked answers."""

from __future__ import annotations

from typing import Any

import pytest

from cotlab.api.models import Prompt
from cotlab.api.tracedataset import Filters, ProblemSelection, Selection, ThinkMarkers, TraceFormat, TraceStats
from cotlab.trainer.core.errors import InvalidInputError
from cotlab.trainer.curate.format import format_trace, percentile, trace_stats, training_example
from cotlab.trainer.curate.records import TraceRecord
from cotlab.trainer.curate.selection import (
    Candidate,
    choose_problems,
    difficulty_rank,
    of_problems,
    passes_filters,
    select_traces,
)


def make_record(id: str, **overrides: Any) -> TraceRecord:
    fields: dict[str, Any] = {"problem": f"problem {id}", "solution": "so \\boxed{7}", "answer": "7"}
    return TraceRecord(id=id, where=f"t.jsonl line {id}", **(fields | overrides))


def make_candidate(id: str, *, length: int = 10, tokens: int | None = None, **overrides: Any) -> Candidate:
    correct = overrides.pop("correct", None)
    return Candidate(make_record(id, **overrides), "x" * length, tokens, correct)


def ids(candidates: list[Candidate]) -> list[str]:
    return [c.record.id for c in candidates]


# --- selection ----------------------------------------------------------------------------------------------

# Lengths: a 5, b 3, c 5, d 1 characters.
BY_LENGTH = [make_candidate("a", length=5), make_candidate("b", length=3), make_candidate("c", length=5)]
BY_LENGTH.append(make_candidate("d", length=1))


@pytest.mark.parametrize(
    ("candidates", "selection", "want"),
    [
        (BY_LENGTH, Selection(count=3, strategy="shortest"), ["d", "b", "a"]),  # a and c tie at 5: by id
        (BY_LENGTH, Selection(count=2, strategy="longest"), ["a", "c"]),
        (BY_LENGTH, Selection(strategy="shortest"), ["d", "b", "a", "c"]),  # count unset: all, in order
        # Tokens, when counted, rank instead of characters: c has fewer tokens despite more characters.
        (
            [make_candidate("a", length=1, tokens=9), make_candidate("c", length=50, tokens=2)],
            Selection(count=1, strategy="shortest"),
            ["c"],
        ),
        # Hardest: Level 5 > 3 > Level 2; "Level ?" and no difficulty come last.
        (
            [
                make_candidate("q", difficulty="Level ?"),
                make_candidate("l2", difficulty="Level 2"),
                make_candidate("n", difficulty=None),
                make_candidate("l5", difficulty="Level 5"),
                make_candidate("three", difficulty="3"),
            ],
            Selection(count=3, strategy="hardest"),
            ["l5", "three", "l2"],
        ),
        # Diverse with one trace per group: round-robin in group name order.
        (
            [
                make_candidate("n1", group="Number Theory"),
                make_candidate("a1", group="Algebra"),
                make_candidate("g1", group="Geometry"),
            ],
            Selection(count=3, strategy="diverse", diversity_field="type"),
            ["a1", "g1", "n1"],
        ),
    ],
    ids=["shortest-ties-by-id", "longest", "count-unset-keeps-all", "tokens-over-chars", "hardest", "diverse"],
)
def test_select_traces(candidates: list[Candidate], selection: Selection, want: list[str]) -> None:
    assert ids(select_traces(candidates, selection)) == want


def test_diverse_takes_a_round_from_every_group_before_a_second() -> None:
    # Algebra 3, Geometry 1, Number Theory 2 -> rounds: (A, G, N), (A, N), (A): the first 5 are A G N A N.
    groups = {"a": "Algebra", "g": "Geometry", "n": "Number Theory"}
    pool = [make_candidate(f"{k}{i}", group=g) for k, g in groups.items() for i in range({"a": 3, "g": 1, "n": 2}[k])]
    got = select_traces(pool, Selection(count=5, strategy="diverse", diversity_field="type", seed=3))
    assert [c.record.id[0] for c in got] == ["a", "g", "n", "a", "n"]
    assert got == select_traces(pool, Selection(count=5, strategy="diverse", diversity_field="type", seed=3))


@pytest.mark.parametrize("strategy", ["random", "hardest", "diverse"], ids=["random", "hardest", "diverse"])
def test_seeded_strategies_repeat_for_a_seed_and_vary_across_seeds(strategy: str) -> None:
    # Every candidate ties (same difficulty, one group), so only the seed orders them.
    pool = [make_candidate(str(i), difficulty="Level 1", group="g") for i in range(20)]
    extra = {"diversity_field": "type"} if strategy == "diverse" else {}
    runs = {
        seed: ids(select_traces(pool, Selection(count=5, seed=seed, strategy=strategy, **extra))) for seed in (0, 1)
    }
    assert runs[0] == ids(select_traces(pool, Selection(count=5, seed=0, strategy=strategy, **extra)))
    assert runs[0] != runs[1]
    assert all(len(set(r)) == 5 and set(r) <= {str(i) for i in range(20)} for r in runs.values())


def test_too_few_traces_says_how_many_passed() -> None:
    with pytest.raises(InvalidInputError, match="20 traces wanted, but only 4 passed the filters"):
        select_traces(BY_LENGTH, Selection(count=20))


@pytest.mark.parametrize(
    ("value", "want"),
    [("Level 5", 5.0), ("7", 7.0), ("2.5", 2.5), ("Level ?", None), (None, None)],
    ids=["level", "integer", "decimal", "unknown-level", "none"],
)
def test_difficulty_rank(value: str | None, want: float | None) -> None:
    assert difficulty_rank(value) == want


# --- filters ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("candidate", "filters", "want"),
    [
        (make_candidate("a", tokens=10), Filters(), True),
        (make_candidate("a", tokens=10), Filters(max_tokens=10), True),
        (make_candidate("a", tokens=11), Filters(max_tokens=10), False),
        (make_candidate("a", tokens=9), Filters(min_tokens=10), False),
        (make_candidate("a", tokens=None), Filters(min_tokens=1), False),
        (make_candidate("a", stage="human"), Filters(stages=["qwq_32b_preview"]), False),
        (make_candidate("a", stage="qwq_32b_preview"), Filters(stages=["qwq_32b_preview"]), True),
        (make_candidate("a", correct=True), Filters(correct_only=True), True),
        (make_candidate("a", correct=False), Filters(correct_only=True), False),
        (make_candidate("a", correct=None), Filters(correct_only=True), False),
    ],
    ids=[
        "none",
        "at-max",
        "over-max",
        "under-min",
        "uncounted",
        "other-stage",
        "stage",
        "correct",
        "wrong",
        "ungraded",
    ],
)
def test_passes_filters(candidate: Candidate, filters: Filters, want: bool) -> None:
    assert passes_filters(candidate, filters) is want


# --- problems -----------------------------------------------------------------------------------------------

# Problems p1..p6; p2 and p5 lack a "qwq" trace. Rows are in source order, stages interleaved.
STAGED = [
    make_record(f"{p}-{stage}", problem_id=p, stage=stage)
    for p, stages in [("p1", "hq"), ("p2", "h"), ("p3", "qh"), ("p4", "hq"), ("p5", "h"), ("p6", "qh")]
    for stage in stages
]


def test_a_seeded_choice_of_problems_with_every_stage() -> None:
    chosen = choose_problems(STAGED, ProblemSelection(count=3, seed=0, with_stages=["h", "q"]))
    assert len(chosen) == 3 and set(chosen) <= {"p1", "p3", "p4", "p6"}
    # The same for any subset of stages the arm keeps later, and for the rows in any order.
    assert choose_problems(STAGED[::-1], ProblemSelection(count=3, seed=0, with_stages=["q", "h"])) == chosen
    assert choose_problems(STAGED, ProblemSelection(count=3, seed=1, with_stages=["h", "q"])) != chosen
    # An arm keeps its stage's traces of those problems, in the problems' order.
    kept = [r for r in of_problems(STAGED, chosen) if r.stage == "q"]
    assert [r.problem_id for r in kept] == chosen


def test_explicit_problem_ids() -> None:
    assert [r.id for r in of_problems(STAGED, ["p5", "p1"])] == ["p5-h", "p1-h", "p1-q"]
    assert choose_problems(STAGED, ProblemSelection(ids=["p5", "p1"])) == ["p5", "p1"]
    with pytest.raises(InvalidInputError, match=r"1 of 2 not among the source's problems, e.g. \['p9'\]"):
        choose_problems(STAGED, ProblemSelection(ids=["p1", "p9"]))


def test_too_few_problems_with_every_stage_says_how_many() -> None:
    with pytest.raises(InvalidInputError, match=r"5 problems wanted, but the source has 4 with a trace of every"):
        choose_problems(STAGED, ProblemSelection(count=5, with_stages=["h", "q"]))
    with pytest.raises(ValueError, match="exactly one of ids or count"):
        ProblemSelection(ids=["p1"], count=1)


# --- formatting ---------------------------------------------------------------------------------------------

THINK = ThinkMarkers()


@pytest.mark.parametrize(
    ("solution", "fmt", "want"),
    [
        ("3 + 4 = \\boxed{7}.", TraceFormat(), "3 + 4 = \\boxed{7}."),
        ("3 + 4 = 7.\n", TraceFormat(), "3 + 4 = 7.\n\nThe final answer is \\boxed{7}."),
        ("3 + 4 = 7.", TraceFormat(answer_in_boxed=False), "3 + 4 = 7."),
        (
            "3 + 4 = \\boxed{7}.",
            TraceFormat(think_markers=THINK),
            "<think>\n3 + 4 = \\boxed{7}.\n</think>\n\nThe final answer is \\boxed{7}.",
        ),
        (
            "Add.",
            TraceFormat(think_markers=ThinkMarkers(open="<reasoning>", close="</reasoning>")),
            "<reasoning>\nAdd.\n</reasoning>\n\nThe final answer is \\boxed{7}.",
        ),
    ],
    ids=["boxed-kept", "box-appended", "no-box-asked", "think-markers", "custom-markers"],
)
def test_format_trace(solution: str, fmt: TraceFormat, want: str) -> None:
    assert format_trace(make_record("1", solution=solution), fmt) == want


def test_chat_example_with_system_turn() -> None:
    candidate = Candidate(make_record("p1", problem="What is 3 + 4?", stage="human"), "so \\boxed{7}", 5)
    fmt = TraceFormat(prompt=Prompt(system="Think step by step.", template="Q: {problem}"))
    assert training_example(candidate, fmt).model_dump(exclude_none=True) == {
        "id": "p1",
        "problem": "What is 3 + 4?",
        "answer": "7",
        "stage": "human",
        "messages": [
            {"role": "system", "content": "Think step by step."},
            {"role": "user", "content": "Q: What is 3 + 4?"},
            {"role": "assistant", "content": "so \\boxed{7}"},
        ],
        "tokens": 5,
    }


@pytest.mark.parametrize(("system", "roles"), [("", ["system", "user", "assistant"]), (None, ["user", "assistant"])])
def test_an_empty_system_text_is_an_empty_system_turn(system: str | None, roles: list[str]) -> None:
    candidate = Candidate(make_record("p1"), "so \\boxed{7}", None)
    example = training_example(candidate, TraceFormat(prompt=Prompt(system=system)))
    assert [(m.role, m.content) for m in example.messages][:-2] == ([("system", "")] if system == "" else [])
    assert [m.role for m in example.messages] == roles


def test_completion_example_has_the_evaluators_prompt_text() -> None:
    candidate = Candidate(make_record("p1", problem="What is 3 + 4?"), "so \\boxed{7}", None)
    fmt = TraceFormat(prompt=Prompt(style="completion", system="Be brief.", template="Problem: {problem}\nSolution:"))
    assert training_example(candidate, fmt).model_dump(exclude_none=True) == {
        "id": "p1",
        "problem": "What is 3 + 4?",
        "answer": "7",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Problem: What is 3 + 4?\nSolution:"},
            {"role": "assistant", "content": "so \\boxed{7}"},
        ],
        "prompt": "Be brief.\n\nProblem: What is 3 + 4?\nSolution:",
        "completion": "so \\boxed{7}",
    }


# --- stats --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "q", "want"),
    [([10, 20, 30, 40, 50, 60, 70, 80, 90, 100], 50, 50), ([10, 20, 30, 40, 50, 60, 70, 80, 90, 100], 90, 90)]
    + [([7], 90, 7), ([1, 2, 3], 50, 2), ([1, 2, 3, 4], 50, 2), ([1, 2, 3, 4], 0, 1)],
    ids=["p50-of-10", "p90-of-10", "single", "p50-odd", "p50-even-lower", "p0-is-min"],
)
def test_percentile_is_nearest_rank(values: list[int], q: float, want: int) -> None:
    assert percentile(values, q) == want


def test_trace_stats() -> None:
    # Tokens 10..100 by tens: p50 is the 5th (50), p90 the 9th (90). Two of three graded correct.
    selected = [make_candidate(str(i), tokens=10 * i, stage="human" if i < 4 else "qwq") for i in range(10, 0, -1)]
    graded = [
        Candidate(c.record, c.trace, c.tokens, correct)
        for c, correct in zip(selected, [True, False, True] * 3 + [True], strict=True)
    ]
    assert trace_stats(graded, graded=True) == TraceStats.model_validate(
        {"tokens": {"min": 10, "p50": 50, "p90": 90, "max": 100}, "correctRate": 0.7, "stages": {"human": 3, "qwq": 7}}
    )


@pytest.mark.parametrize(
    ("fmt", "ends_with_the_line", "want"),
    [
        (TraceFormat(), [True, False, True], 2),
        (TraceFormat(answer_in_boxed=False), [False, False, False], None),
        (TraceFormat(think_markers=THINK), [True, True, True], None),  # the markers' layout, not answerInBoxed
    ],
    ids=["answer-in-boxed", "off", "think-markers"],
)
def test_trace_stats_count_the_traces_answer_in_boxed_changed(
    fmt: TraceFormat, ends_with_the_line: list[bool], want: int | None
) -> None:
    # Two of three solutions have no boxed answer: answerInBoxed gives them "The final answer is \\boxed{7}.".
    records = [make_record("a", solution="7."), make_record("b"), make_record("c", solution="The sum is 7")]
    selected = [Candidate(r, format_trace(r, fmt), None) for r in records]
    assert [c.trace.endswith("The final answer is \\boxed{7}.") for c in selected] == ends_with_the_line
    assert trace_stats(selected, graded=False, fmt=fmt) == TraceStats(answers_appended=want)


def test_trace_stats_without_tokenizer_or_answers() -> None:
    assert trace_stats([make_candidate("a"), make_candidate("b")], graded=False) == TraceStats()
