"""cotlab.trainer.grading.grader: boxed extraction, the exact rules, Math-Verify in workers, and timeouts."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cotlab.trainer.grading.grader import Grade, Grader, extract_answer, grade_answers, is_equivalent

CASES_FILE = Path(__file__).parent / "data" / "grading_cases.jsonl"


def _load_cases() -> list[Any]:
    params = []
    for number, line in enumerate(CASES_FILE.read_text(encoding="utf-8").splitlines(), start=1):
        case = json.loads(line)
        orders = [("gold-first", case["pred"], case["gold"])]
        if case["both_orders"]:
            orders.append(("swapped", case["gold"], case["pred"]))
        for order, pred, gold in orders:
            params.append(
                pytest.param(
                    pred,
                    gold,
                    case["expected"],
                    case["answer_kind"],
                    case["extract"],
                    id=f"line{number}-{order}-{case['source'].split('::')[-1].split(' ')[0]}",
                )
            )
    return params


@pytest.fixture(scope="module")
def grader() -> Iterator[Grader]:
    with Grader(workers=2, timeout_s=10.0) as pool:
        yield pool


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("so the answer is $\\boxed{42}$.", "42"),
        ("first \\boxed{1}, then \\boxed{2}", "2"),
        ("\\boxed{\\frac{1}{\\sqrt{2}}}", "\\frac{1}{\\sqrt{2}}"),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("\\boxed{\\left\\{ x \\right.}", "\\left\\{ x \\right."),
        ("The answer is $\\boxed 5$.", "5"),
        ("\\boxed 12\nnext line", "12"),
        ("\\boxed7", "7"),
        ("\\fbox{3}", "3"),
        ("\\boxed{1} and finally \\fbox{B}", "B"),
        ("\\boxed{ 7 }", "7"),
        ("no box here", None),
        ("", None),
        ("\\boxed{}", None),
        ("a truncated \\boxed{\\frac{1}{2", None),
        ("\\boxed{1} then a truncated \\boxed{2", None),
        ("\\boxedfoo{3}", None),
        ("}}}{{{\\boxed{{{", None),
    ],
    ids=[
        "simple",
        "last-wins",
        "nested",
        "escaped-set-braces",
        "unbalanced-escaped",
        "space-form",
        "space-form-newline",
        "single-char",
        "fbox",
        "fbox-after-boxed",
        "whitespace",
        "none",
        "empty",
        "empty-box",
        "unclosed",
        "unclosed-last",
        "not-a-command",
        "garbage",
    ],
)
def test_extract_answer(text: str, want: str | None) -> None:
    assert extract_answer(text) == want


@pytest.mark.parametrize(("pred", "gold", "expected", "answer_kind", "extract"), _load_cases())
def test_published_cases(
    grader: Grader, pred: str | None, gold: str, expected: bool, answer_kind: Any, extract: bool
) -> None:
    [grade] = grader.grade([(pred, gold)], answer_kind=answer_kind, extract=extract)
    assert grade.correct is expected, grade


@pytest.mark.parametrize(
    ("pred", "gold", "answer_kind", "want"),
    [
        (None, "5", "latex", Grade(False, None, "no_answer")),
        ("  ", "5", "latex", Grade(False, None, "no_answer")),
        ("073", "73", "integer", Grade(True, "073", "integer")),
        ("74", "73", "integer", Grade(False, "74", "integer")),
        ("73.000001", "73", "integer", Grade(False, "73.000001", "integer")),
        ("2{,}024", "2024", "latex", Grade(True, "2{,}024", "integer")),
        ("28\\%", "28", "latex", Grade(True, "28\\%", "integer")),
        ("\\text{(B)}", "B", "choice", Grade(True, "\\text{(B)}", "choice")),
        ("(C)", "B", "choice", Grade(False, "(C)", "choice")),
        ("\\left(1, 2\\right)", "(1,2)", "latex", Grade(True, "\\left(1, 2\\right)", "string")),
        ("\\dfrac{3}{4}", "\\frac{3}{4}", "latex", Grade(True, "\\dfrac{3}{4}", "string")),
        ("0.75", "\\frac{3}{4}", "latex", Grade(True, "0.75", "math_verify")),
        ("\\frac{3}{5}", "\\frac{3}{4}", "latex", Grade(False, "\\frac{3}{5}", "math_verify")),
        ("1 2", "12", "integer", Grade(False, "1 2", "math_verify")),
        ("3 4", "34", "latex", Grade(False, "3 4", "math_verify")),
        ("x = 5", "x=5", "latex", Grade(True, "x = 5", "string")),
        ("\\frac {1}{2}", "\\frac{1}{2}", "latex", Grade(True, "\\frac {1}{2}", "string")),
        ("10\\,000", "10000", "latex", Grade(True, "10\\,000", "integer")),
        ("-1\\,234\\,567", "-1234567", "integer", Grade(True, "-1\\,234\\,567", "integer")),
        ("\\leftarrow", "\\rightarrow", "latex", Grade(False, "\\leftarrow", "math_verify")),
        ("x \\leftarrow y", "x \\rightarrow y", "latex", Grade(False, "x \\leftarrow y", "math_verify")),
    ],
    ids=[
        "none",
        "blank",
        "aime-leading-zero",
        "aime-wrong",
        "aime-no-float-rounding",
        "thousands-braces",
        "percent",
        "choice-text",
        "choice-wrong",
        "string-left-right",
        "string-dfrac",
        "mv-decimal",
        "mv-wrong",
        "digits-spaced-not-string",
        "digits-spaced-latex",
        "string-equation-spaces",
        "string-latex-spaces",
        "thin-space-thousands",
        "thin-space-millions",
        "left-arrow-is-not-right-arrow",
        "arrows-in-a-relation",
    ],
)
def test_rule_that_decides(grader: Grader, pred: str | None, gold: str, answer_kind: Any, want: Grade) -> None:
    assert grader.grade([(pred, gold)], answer_kind=answer_kind) == [want]


# Leading zeros, as NeMo-Skills' own math_equal graded them (run on its source, gold then prediction): at 0f7bd73,
# the commit the study cites, `code_execution/math_grader.py` turns an integer-valued answer into its integer
# (`normalize_answer_string`: `_str_is_int` then `str(_str_to_int(...))`), so `073` is `73`; since 11bdf490
# (2025-05-08, `evaluation/math_grader.py`, unchanged at 0b012df) digit strings compare literally and `073` is wrong.
# cotlab follows the cited commit (README, "Grading"): an AIME answer sheet writes 73 as 073.
LEADING_ZEROS = [
    # (gold, prediction, NeMo-Skills at 0f7bd73, NeMo-Skills at 0b012df)
    ("73", "073", True, False),
    ("73", "0073", True, False),
    ("0", "000", True, False),
    ("100", "0100", True, False),
    ("-7", "-07", True, True),
    ("73", "073.0", True, True),
    ("1.5", "01.5", True, True),
]


@pytest.mark.parametrize("answer_kind", ["integer", "latex"])
@pytest.mark.parametrize(("gold", "pred", "at_0f7bd73", "at_0b012df"), LEADING_ZEROS, ids=[c[1] for c in LEADING_ZEROS])
def test_leading_zeros_grade_as_at_the_cited_nemo_skills_commit(
    grader: Grader, gold: str, pred: str, at_0f7bd73: bool, at_0b012df: bool, answer_kind: Any
) -> None:
    assert grader.grade([(pred, gold)], answer_kind=answer_kind)[0].correct is at_0f7bd73


def test_order_and_duplicates_are_kept(grader: Grader) -> None:
    pairs: list[tuple[str | None, str]] = [("0.5", "\\frac12"), ("7", "7"), (None, "1"), ("0.5", "\\frac12")] * 5
    grades = grader.grade(pairs)
    assert [g.correct for g in grades] == [True, True, False, True] * 5
    assert [g.rule for g in grades[:4]] == ["math_verify", "integer", "no_answer", "math_verify"]


def test_deduplicated_pairs_keep_their_own_text(grader: Grader) -> None:
    # Both normalise to the same Math-Verify comparison; each grade must still carry its own answer.
    pairs: list[tuple[str | None, str]] = [("\\frac{1}{2}.", "0.5"), ("\\frac{1}{2}", "0.5"), ("\\frac{1}{2}.", "0.5")]
    grades = grader.grade(pairs)
    assert [(g.correct, g.predicted, g.rule) for g in grades] == [
        (True, "\\frac{1}{2}.", "math_verify"),
        (True, "\\frac{1}{2}", "math_verify"),
        (True, "\\frac{1}{2}.", "math_verify"),
    ]
    outputs: list[tuple[str | None, str]] = [("so $\\boxed{\\frac{1}{2}.}$", "0.5"), ("$\\boxed{\\frac{1}{2}}$", "0.5")]
    assert [g.predicted for g in grader.grade(outputs, extract=True)] == [extract_answer(text) for text, _ in outputs]


def test_extract_from_whole_outputs(grader: Grader) -> None:
    outputs: list[tuple[str | None, str]] = [
        ("Thus $x = \\boxed{\\dfrac{3}{4}}$.", "0.75"),
        ("I could not finish", "0.75"),
        (None, "0.75"),
    ]
    assert [(g.correct, g.predicted, g.rule) for g in grader.grade(outputs, extract=True)] == [
        (True, "\\dfrac{3}{4}", "math_verify"),
        (False, None, "no_answer"),
        (False, None, "no_answer"),
    ]


@pytest.mark.parametrize(
    "pred",
    ["\\frac{", "}}}{{{", "\\begin{pmatrix}", "\x00\x01", "\\sqrt[", "1" * 5000, "x" * 20_000, "$$$", "\\\\\\"],
    ids=[
        "open-frac",
        "braces",
        "open-env",
        "control-chars",
        "open-root",
        "5000-digits",
        "long",
        "dollars",
        "backslashes",
    ],
)
def test_model_text_never_raises(grader: Grader, pred: str) -> None:
    [grade] = grader.grade([(pred, "5")])
    assert grade.correct is False
    assert grade.rule in {"math_verify", "error", "timeout", "string", "integer"}


def test_pathological_input_times_out_and_pool_recovers() -> None:
    timeout_s = 1.0
    # The grader must give up on a stuck comparison, never hang; the margin covers killing the worker on a
    # loaded machine, and only this comparison is timed (starting a replacement worker is not).
    margin_s = 15.0
    with Grader(workers=1, timeout_s=timeout_s) as pool:
        pool.grade([("1/2", "0.5")])  # start the worker, so start-up is not timed below
        started = time.monotonic()
        [stuck] = pool.grade([("9^{9^{9^{9}}}", "5")])
        elapsed = time.monotonic() - started
        assert (stuck.correct, stuck.rule) == (False, "timeout")
        assert elapsed < timeout_s + margin_s, elapsed
        grades = pool.grade([("9^{9^{9^{9}}}", "6"), ("1/2", "0.5")])
        assert (grades[0].correct, grades[0].rule) == (False, "timeout")
        # The comparison queued behind the stuck one runs on a fresh worker.
        assert (grades[1].correct, grades[1].rule) == (True, "math_verify")
        assert pool.grade([("\\sqrt{4}", "2")])[0].correct


def test_grade_answers_and_is_equivalent() -> None:
    assert [g.correct for g in grade_answers([("1/2", "0.5"), ("3", "4")], workers=1)] == [True, False]
    assert is_equivalent("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}")
    assert not is_equivalent("\\frac{\\sqrt{3}}{2}", "\\frac{1}{\\sqrt{2}}")
    assert not is_equivalent(None, "1")


def test_numeric_gold_is_graded_as_text(grader: Grader) -> None:
    # JSON datasets store AIME answers as numbers; the Math-Verify path must take them as well as the exact rules.
    pairs: list[tuple[Any, Any]] = [("073", 73), ("\\frac{146}{2}", 73), ("\\frac{1}{3}", 0.5), (73, "73")]
    assert [(g.correct, g.rule) for g in grader.grade(pairs)] == [
        (True, "integer"),
        (True, "math_verify"),
        (False, "math_verify"),
        (True, "integer"),
    ]
    assert is_equivalent("\\frac{146}{2}", 73)  # type: ignore[arg-type]


def test_grade_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Grade(True, "1", "integer").correct = False  # type: ignore[misc]


def test_closed_grader_refuses_work() -> None:
    pool = Grader(workers=1)
    pool.close()
    assert pool.grade([("5", "5")]) == [Grade(True, "5", "integer")]  # exact rules need no worker
    with pytest.raises(RuntimeError, match="closed"):
        pool.grade([("0.5", "1/2")])


def _wait_or_kill(pid: int, timeout_s: float) -> int | None:
    """The child's exit status, or None after killing it when it outlives `timeout_s` (a hang)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def test_a_forked_child_grades_with_its_own_workers() -> None:
    """A process forked after grading (a DataLoader worker, a test runner) must not share the parent's workers."""
    child_pairs: list[tuple[str | None, str]] = [(f"\\frac{{{i}}}{{{2 * i}}}", "1/2") for i in range(1, 30)]
    parent_pairs: list[tuple[str | None, str]] = [(f"\\frac{{{i}}}{{{i + 1}}}", "1/2") for i in range(2, 30)]
    with Grader(workers=1, timeout_s=10.0) as grader:
        assert grader.grade([("0.5", "1/2")])[0].correct  # the parent's worker is running
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: grade, stop its workers, report; never return into pytest
            code = 1
            try:
                os.close(read)
                grades = grader.grade(child_pairs)
                grader.close()
                os.write(write, json.dumps([g.correct for g in grades]).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        parent = grader.grade(parent_pairs)  # at the same time as the child
        status = _wait_or_kill(pid, 120.0)
        with os.fdopen(read) as f:
            reported = f.read()
        assert status == 0, f"the child failed (exit {status})"
        assert json.loads(reported) == [True] * len(child_pairs)
        assert [g.correct for g in parent] == [False] * len(parent_pairs)
        assert grader.grade([("0.25", "1/4")])[0].correct  # the parent's pool still works
