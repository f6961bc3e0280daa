"""Grade model answers against gold answers: last `\\boxed{}`, fast exact rules, then Math-Verify.

The order follows NeMo-Skills' `math_equal` at 0f7bd73, the commit the study cites
(`code_execution/math_grader.py` there):

1. no answer (nothing boxed) is wrong;
2. integers are compared as numbers, so `073` is `73` (an AIME answer sheet writes it so), as 0f7bd73 graded it;
   NeMo-Skills' later grader (`evaluation/math_grader.py`, since 11bdf490, 2025-05-08) compares digit strings
   literally and grades `073` wrong, which can only lower a score;
3. multiple-choice letters (`(B)`, `B`, `\\text{(B)}`) are compared as letters;
4. answers that are identical after light normalisation are right;
5. everything else goes to Math-Verify, gold first (`verify` is not symmetric), with both sides wrapped in
   `$...$` so its LaTeX extraction finds them.

Steps 1-4 run in the calling process and cost microseconds. Step 5 runs in worker processes with a hard
per-comparison timeout (`cotlab.trainer.grading.pool`): Math-Verify's own timeout cannot interrupt long C-level
work, so a stuck worker is killed and replaced instead. Model text never raises: every outcome is a `Grade`
naming the rule that decided it.
"""

from __future__ import annotations

import atexit
import logging
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from cotlab.api.benchmarks import AnswerKind
from cotlab.trainer.core.cpus import usable_cpus
from cotlab.trainer.grading.pool import Comparison, MathVerifyPool

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "Grade",
    "Grader",
    "Rule",
    "extract_answer",
    "grade_answer",
    "grade_answers",
    "is_equivalent",
]

logger = logging.getLogger(__name__)

Rule = Literal["no_answer", "integer", "choice", "string", "math_verify", "timeout", "error"]

DEFAULT_TIMEOUT_S = 5.0
"""Seconds one Math-Verify comparison may take; Math-Verify's own default, and NeMo-Skills' is 10."""

_MAX_INTEGER_DIGITS = 1000
"""Longer digit strings go to a worker: `int()` refuses more than 4300 digits and nobody's answer is that."""


@dataclass(frozen=True)
class Grade:
    """The outcome of grading one answer: whether it is right, what was read, and which rule decided."""

    correct: bool
    predicted: str | None
    rule: Rule
    detail: str | None = None


_BOX_COMMAND = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


def extract_answer(text: str) -> str | None:
    """Return the content of the last `\\boxed{...}` / `\\fbox{...}` / `\\boxed 5` in `text`, or None.

    Braces are matched, so `\\boxed{\\frac{1}{2}}` gives `\\frac{1}{2}`; escaped braces (`\\{`, `\\}`) are
    literal set braces and do not count. A last box that never closes (a truncated output) or is empty gives
    None: an earlier box is a draft, not the final answer.
    """
    if not isinstance(text, str):
        return None
    matches = list(_BOX_COMMAND.finditer(text))
    if not matches:
        return None
    start = matches[-1].end()
    rest = text[start:]
    stripped = rest.lstrip()
    if stripped.startswith("{"):
        content = _braced_group(stripped)
    elif rest[:1].isspace():
        # `\boxed 5$`: the old MATH form; the argument runs to the closing `$` or the end of the line.
        content = re.split(r"[$\n]", stripped, maxsplit=1)[0]
    else:
        # `\boxed5`: LaTeX reads a single-character argument.
        content = rest[:1]
    if content is None:
        return None
    content = content.strip()
    return content or None


def _braced_group(s: str) -> str | None:
    """Content of the `{...}` group that `s` starts with, or None when it never closes."""
    depth = 0
    i = 0
    while i < len(s):
        ch = s[i]
        if ch == "\\":
            i += 2  # `\{`, `\}` and `\\` are single tokens
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return s[1:i]
        i += 1
    return None


# The exact rules, decided in the calling process.
_PERCENT = re.compile(r"^(\d+\.?\d*)(?:\\%|%)$")
_MATH_DELIMITERS = re.compile(r"^\$+(.*?)\$+$|^\\\((.*)\\\)$|^\\\[(.*)\\\]$", re.DOTALL)
_UNIT_SUFFIX = re.compile(r"(?:\\[,;: ]|~|\s)*\\(?:text|textnormal|mbox)\{[^{}]*\}$")
_DEGREES = re.compile(r"\s*(?:\^\s*\{?\s*\\circ\s*\}?|°|\\degree)$")
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})+$")
# `10\,000`: LaTeX's thin space as the thousands separator (siunitx and many solutions write numbers so).
_THIN_SPACE_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(?:\\,\d{3})+$")
_INTEGER = re.compile(r"^[+-]?[0-9]+$")
_DECIMAL = re.compile(r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)$")
_WRAPPER = re.compile(r"^\\(?:text|textbf|textnormal|mathrm|mathbf|boxed)\{(.*)\}$", re.DOTALL)
_CHOICE_EXACT = re.compile(r"^\(?([A-J])\)?$")
# In a multiple-choice benchmark "C. x = 42" chose C (a NeMo-Skills case).
_CHOICE_LEADING = re.compile(r"^\(?([A-J])(?:\)|[.:]|\s|$)")
_FRAC_VARIANT = re.compile(r"\\[dtc]frac")
# A whole control word only: `\leftarrow` is an arrow, not `\left` + "arrow" (which `\rightarrow` would equal).
_SIZING = re.compile(r"\\(?:left|right|displaystyle)(?![A-Za-z])")
_SPACES = re.compile(r"\s+")
# Once runs of spaces are one space: a control word ends at its first non-letter, so `\sqrt 2` is `\sqrt2`
# (but `\pi r` is not `\pir`); any other space goes unless it separates two letters or digits (`1 2` is not
# `12`; `x = 5` is `x=5`).
_SPACE_AFTER_COMMAND = re.compile(r"(\\[A-Za-z]+) (?![A-Za-z])")
_NOISE_SPACE = re.compile(r"(?<![^\W_]) | (?![^\W_])")


def _nemo_normalise(answer: str) -> str:
    """NeMo-Skills' `_additional_normalization`: `10\\%` -> `10`, drop a sentence-final `.` or `\\`."""
    answer = answer.strip()
    match = _PERCENT.fullmatch(answer)
    if match:
        answer = match.group(1)
    return answer.rstrip(".\\").strip()


def _strip_delimiters(s: str) -> str:
    s = s.strip()
    match = _MATH_DELIMITERS.fullmatch(s)
    if match:
        s = next(g for g in match.groups() if g is not None).strip()
    return s


def _as_number_text(answer: str) -> str:
    """Peel what never changes a number's value: `$`, `\\!`, `{,}`, thousands commas, units, degrees."""
    s = _strip_delimiters(answer).replace("\\!", "").replace("{,}", "").replace("−", "-")
    s = s.removeprefix("\\$").strip()
    s = _UNIT_SUFFIX.sub("", s).strip()
    s = _DEGREES.sub("", s).strip()
    s = s.removesuffix("\\%").removesuffix("%").strip()
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    elif _THIN_SPACE_THOUSANDS.fullmatch(s):
        s = s.replace("\\,", "")
    return s


def _as_integer(answer: str) -> int | None:
    s = _as_number_text(answer)
    if len(s) <= _MAX_INTEGER_DIGITS and _INTEGER.fullmatch(s):
        return int(s)
    return None


def _as_choice(answer: str, *, leading: bool) -> str | None:
    s = _strip_delimiters(answer)
    while (match := _WRAPPER.fullmatch(s)) is not None:
        s = match.group(1).strip()
    match = (_CHOICE_LEADING if leading else _CHOICE_EXACT).match(s)
    return match.group(1) if match else None


def _canonical(answer: str) -> str:
    """A spelling-insensitive key: no delimiters, `\\left`/`\\right`, `\\dfrac` spelled `\\frac`, and no spaces
    except one between two letters or digits (`1 2` and `12` differ; `x = 5` and `x=5` do not)."""
    s = _SIZING.sub("", _FRAC_VARIANT.sub(r"\\frac", _strip_delimiters(answer)))
    s = _SPACE_AFTER_COMMAND.sub(r"\1", _SPACES.sub(" ", s.strip()))
    return _NOISE_SPACE.sub("", s).rstrip(".")


def _decide_fast(predicted: str, gold: str, answer_kind: AnswerKind) -> Grade | None:
    """Decide in this process when an exact rule applies; None means Math-Verify must decide."""
    gold_n, pred_n = _nemo_normalise(gold), _nemo_normalise(predicted)

    gold_int, pred_int = _as_integer(gold_n), _as_integer(pred_n)
    if gold_int is not None and pred_int is not None:
        return Grade(gold_int == pred_int, predicted, "integer")
    if answer_kind == "integer" and gold_int is not None:
        # AIME answers are integers: a plain decimal that is not exactly the integer is wrong, with no
        # float rounding (Math-Verify rounds to 6 places, which would accept 73.0000001).
        pred_text = _as_number_text(pred_n)
        if len(pred_text) <= _MAX_INTEGER_DIGITS and _DECIMAL.fullmatch(pred_text):
            return Grade(Fraction(pred_text) == gold_int, predicted, "integer")

    gold_choice = _as_choice(gold_n, leading=False)
    if gold_choice is not None:
        pred_choice = _as_choice(pred_n, leading=answer_kind == "choice")
        if pred_choice is not None:
            return Grade(gold_choice == pred_choice, predicted, "choice")

    if _canonical(gold_n) == _canonical(pred_n):
        return Grade(True, predicted, "string")
    return None


def _as_text(value: object) -> str | None:
    """Answers as text: datasets store numeric golds as numbers (an AIME answer `73`), and grading never raises."""
    return value if value is None or isinstance(value, str) else str(value)


def _grade_fast(predicted: str | None, gold: str, answer_kind: AnswerKind) -> Grade | None:
    if predicted is None or not predicted.strip():
        return Grade(False, None, "no_answer")
    return _decide_fast(predicted, gold, answer_kind)


class Grader:
    """A pool of grading workers, reused across calls; use as a context manager.

    Args:
        workers: worker processes for Math-Verify comparisons; default: the CPUs this process may use, its
            container's CPU limit included (`cotlab.trainer.core.cpus.usable_cpus`).
        timeout_s: seconds one comparison may take before it is graded wrong with rule "timeout".
        start_method: multiprocessing start method. "forkserver" (default) never forks the caller, which
            may hold threads (vLLM, tokenizers), and forks replacements for killed workers from a server
            that has Math-Verify imported already. As with "spawn", the caller's main module must be safe
            to import (`if __name__ == "__main__":`), because workers import it.
    """

    def __init__(
        self, *, workers: int | None = None, timeout_s: float = DEFAULT_TIMEOUT_S, start_method: str = "forkserver"
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s: must be > 0, got {timeout_s}")
        self.workers = workers or usable_cpus()
        self.timeout_s = timeout_s
        self._pool = MathVerifyPool(workers=self.workers, timeout_s=timeout_s, start_method=start_method)
        self._lock = threading.Lock()
        self._closed = False

    def __enter__(self) -> Grader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers. Idempotent."""
        with self._lock:
            self._closed = True
            self._pool.close()

    def grade(
        self,
        pairs: Iterable[tuple[str | None, str]],
        *,
        answer_kind: AnswerKind = "latex",
        extract: bool = False,
    ) -> list[Grade]:
        """Grade (prediction, gold) pairs, in order.

        A prediction is an extracted answer (None when there is none) or, with `extract=True`, the model's
        whole output, from which the last boxed answer is taken. Pairs that no exact rule decides are
        deduplicated and sent to the workers in chunks.
        """
        grades: list[Grade | None] = []
        slots: dict[tuple[str, str], int] = {}
        waiting: list[list[tuple[int, str]]] = []  # per slot: (index into grades, that pair's predicted)
        tasks: list[Comparison] = []
        for predicted_value, gold_value in pairs:
            predicted_text, gold = _as_text(predicted_value), str(gold_value)
            predicted = extract_answer(predicted_text) if extract and predicted_text is not None else predicted_text
            grade = _grade_fast(predicted, gold, answer_kind)
            if grade is not None:
                grades.append(grade)
                continue
            assert predicted is not None  # _grade_fast decides no-answer
            key = (_nemo_normalise(gold), _nemo_normalise(predicted))
            slot = slots.get(key)
            if slot is None:
                slot = slots[key] = len(waiting)
                waiting.append([])
                tasks.append((slot, *key))
            # Pairs that share a key share an outcome, but each grade keeps its own text (maj@k groups by it).
            waiting[slot].append((len(grades), predicted))
            grades.append(None)

        if tasks:
            with self._lock:
                if self._closed:
                    raise RuntimeError("Grader is closed; create a new one")
                outcomes = self._pool.run(tasks)
            for slot, members in enumerate(waiting):
                correct, rule, detail = outcomes[slot]
                for index, predicted in members:
                    grades[index] = Grade(correct, predicted, rule, detail)
        return [grade for grade in grades if grade is not None]

    def equivalent(self, a: str, b: str, *, answer_kind: AnswerKind = "latex") -> bool:
        """Whether answer `b` is equivalent to answer `a` (`a` in the gold position); for majority grouping."""
        return self.grade([(b, a)], answer_kind=answer_kind)[0].correct


def grade_answers(
    pairs: Iterable[tuple[str | None, str]],
    *,
    answer_kind: AnswerKind = "latex",
    extract: bool = False,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    workers: int | None = None,
) -> list[Grade]:
    """Grade (prediction, gold) pairs with a pool that lives for this call; see `Grader.grade`."""
    with Grader(workers=workers, timeout_s=timeout_s) as grader:
        return grader.grade(pairs, answer_kind=answer_kind, extract=extract)


_shared: Grader | None = None
_shared_lock = threading.Lock()


def grade_answer(
    predicted: str | None, gold: str, *, answer_kind: AnswerKind = "latex", timeout_s: float = DEFAULT_TIMEOUT_S
) -> Grade:
    """Grade one extracted answer; Math-Verify runs in a shared one-worker pool started on first need."""
    predicted, gold = _as_text(predicted), str(gold)
    grade = _grade_fast(predicted, gold, answer_kind)
    if grade is not None:
        return grade
    global _shared
    with _shared_lock:
        if _shared is None or _shared.timeout_s != timeout_s:
            if _shared is not None:
                _shared.close()
            _shared = Grader(workers=1, timeout_s=timeout_s)
            atexit.register(_shared.close)
        grader = _shared
    return grader.grade([(predicted, gold)], answer_kind=answer_kind)[0]


def is_equivalent(
    predicted: str | None, gold: str, *, answer_kind: AnswerKind = "latex", timeout_s: float = DEFAULT_TIMEOUT_S
) -> bool:
    """Whether an extracted answer is equivalent to the gold answer (gold first: `verify` is asymmetric)."""
    return grade_answer(predicted, gold, answer_kind=answer_kind, timeout_s=timeout_s).correct
