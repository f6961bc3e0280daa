"""Majority voting over a problem's sampled answers (maj@k), by one of four rules.

- `equivalence` (cotlab's): answers are grouped into classes, the connected components of "equivalent" (the
  grader's verdict) over the distinct answers; the class with the most votes wins. Each class scores the mean
  correctness of its votes, and tied classes share the credit (the mean of their scores). Independent of the
  order the samples are listed in.

The other three are NVIDIA/NeMo-Skills' exact-string votes: a vote is an `(answer text, correct)` pair, and
`Counter(votes).most_common(1)` picks the winner. They differ only in what a tie gives, which changed twice
(`git log -S most_common -- nemo_skills/evaluation/metrics/`):

- `first-sampled`: from the first commit (2a2886e3, 2024-02-15) up to 098f04d9 (2025-06-05, #504), so at
  0f7bd73 (2025-04-23), the commit the study's manifests cite (`evaluation/metrics/math_metrics.py:179` there).
  `most_common(1)` returns the first of the tied pairs in the order they were first seen: the tie goes to the
  pair sampled first. cotlab passes the votes in sample-index order (each record holds its `sample_index` and
  the seed it was drawn from); NeMo-Skills read them in the order `glob` listed its
  `output-rs<seed>.jsonl` files (`pipeline/summarize_results.py` there does not sort them), which depends on the
  filesystem. So a tie there went to an answer of one seed's file chosen by the directory listing; here it goes
  to the lowest sample index. Both look at the order, never at the answers.
- `sorted`: from 098f04d9 (2025-06-05) up to d20fbb2c (2025-08-18, #679): the pairs are sorted before
  counting, so a tie goes to the smallest pair (smallest answer string; for one answer, `False` first).
- `fractional`: from d20fbb2c (2025-08-18) on (unchanged at 0b012df, 2025-11-15): a tie scores the mean
  correctness of the tied pairs.

No-answer samples (None) never vote; a problem with no answer at all scores 0.

Equivalence needs pairwise comparisons of distinct answers. They go to the grader in batches
(`EquivalenceCheck`): `summarize` asks for every pair of every problem in one call, so the grading pool runs
them in parallel instead of one ~10 s-bounded comparison at a time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from cotlab.api.evalrun import MAJORITY_RULES, MajorityRule

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

    `answers` and `correct` are in sample order (`first-sampled` reads it). With `rule="equivalence"` and no
    `equivalent`, answers are taken as already-normalised keys.
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
    counts = Counter(votes)  # insertion-ordered: the pairs in the order they were first sampled
    if rule == "first-sampled":
        # NeMo-Skills' own call: of tied counts, most_common(1) returns the pair seen first (heapq.nlargest with
        # n=1 is max(), which keeps the first maximum; checked in CPython's collections and heapq).
        return float(counts.most_common(1)[0][0][1])
    most = max(counts.values())
    tied_pairs = sorted(pair for pair, count in counts.items() if count == most)
    if rule == "sorted":
        return float(tied_pairs[0][1])
    if rule == "fractional":
        return sum(is_correct for _, is_correct in tied_pairs) / len(tied_pairs)
    raise ValueError(f"unknown majority rule {rule!r}; valid rules: {', '.join(MAJORITY_RULES)}")
