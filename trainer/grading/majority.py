"""Majority voting over a problem's sampled answers (maj@k), by one of three rules, none of which depends on the
order the samples are listed in.

- `equivalence` (cotlab's): answers are grouped into classes, the connected components of "equivalent" (the
  grader's verdict) over the distinct answers; the class with the most votes wins. Each class scores the mean
  correctness of its votes, and tied classes share the credit (the mean of their scores).
- `string`: NeMo-Skills' rule as the study's evaluation ran it (`evaluation/metrics/base.py` until 2025-08-18):
  votes are exact `(answer text, correct)` pairs, and a tie goes to the smallest pair, because the pairs are
  sorted before `Counter.most_common(1)` picks the first of the most common.
- `string-fractional`: NeMo-Skills since 2025-08-18 (NVIDIA/NeMo-Skills#679): the same votes, and a tie
  scores the mean correctness of the tied pairs.

No-answer samples (None) never vote; a problem with no answer at all scores 0.

Equivalence needs pairwise comparisons of distinct answers. They go to the grader in batches
(`EquivalenceCheck`): `summarize` asks for every pair of every problem in one call, so the grading pool runs
them in parallel instead of one ~10 s-bounded comparison at a time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from cotlab.api.evalrun import MajorityRule

EquivalenceCheck = Callable[[Sequence[tuple[str, str]]], Sequence[bool]]
"""For each pair (a, b), whether b is equivalent to a, with a in the gold position. Pairs come as (smaller,
larger) in string order, so the verdict on two answers never depends on which was sampled first."""


def answer_pairs(answers: Iterable[str | None]) -> list[tuple[str, str]]:
    """Every pair of distinct answers, each as (smaller, larger): what equivalence voting asks about."""
    distinct = sorted({a for a in answers if a is not None})
    return [(a, b) for i, a in enumerate(distinct) for b in distinct[i + 1 :]]


def equivalence_classes(answers: Iterable[str | None], equivalent: EquivalenceCheck | None) -> dict[str, str]:
    """Each distinct answer's class, named by its smallest member: connected components of `equivalent`.

    Components, not "join the first group that matches", because equivalence as graded is not always
    transitive, and joining depends on which answer came first; components do not.
    """
    distinct = sorted({a for a in answers if a is not None})
    parent = {a: a for a in distinct}

    def root(a: str) -> str:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    pairs = answer_pairs(distinct) if equivalent is not None else []
    verdicts = equivalent(pairs) if pairs and equivalent is not None else []
    if len(verdicts) != len(pairs):
        raise ValueError(f"equivalence check answered {len(verdicts)} of {len(pairs)} pairs")
    for (a, b), same in zip(pairs, verdicts, strict=True):
        if same:
            ra, rb = root(a), root(b)
            parent[max(ra, rb)] = min(ra, rb)  # the smaller string names the class
    return {a: root(a) for a in distinct}


def majority_vote(
    answers: Sequence[str | None],
    correct: Sequence[bool],
    *,
    rule: MajorityRule = "equivalence",
    equivalent: EquivalenceCheck | None = None,
) -> float:
    """The majority's correctness for one problem, in [0, 1] (a fraction only when tied classes disagree).

    With `rule="equivalence"` and no `equivalent`, answers are taken as already-normalised keys.
    """
    if len(answers) != len(correct):
        raise ValueError(f"answers and correct differ in length: {len(answers)} != {len(correct)}")
    votes = [(a, c) for a, c in zip(answers, correct, strict=True) if a is not None]
    if not votes:
        return 0.0
    if rule == "equivalence":
        classes = equivalence_classes([a for a, _ in votes], equivalent)
        members: dict[str, list[bool]] = {}
        for answer, is_correct in votes:
            members.setdefault(classes[answer], []).append(is_correct)
        most = max(len(m) for m in members.values())
        tied = [sum(m) / len(m) for m in members.values() if len(m) == most]
        return sum(tied) / len(tied)
    counts = Counter(votes)
    most = max(counts.values())
    tied_pairs = sorted(pair for pair, count in counts.items() if count == most)
    if rule == "string":
        return float(tied_pairs[0][1])
    if rule == "string-fractional":
        return sum(is_correct for _, is_correct in tied_pairs) / len(tied_pairs)
    raise ValueError(f"unknown majority rule {rule!r}; valid rules: equivalence, string, string-fractional")
