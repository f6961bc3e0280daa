"""Score many-sample evaluations: pass@1, unbiased pass@k, maj@k and the rates beside them, defined once.

Inputs are per-problem lists in sample order (a correctness matrix, an answer matrix); every score is a
fraction in [0, 1] (the CLI shows percent) with a standard error over problems:

    value  = mean over problems of the per-problem score
    stderr = sample standard deviation (ddof=1) of the per-problem scores / sqrt(number of problems)

so problems are the sampling unit (each problem weighs the same whatever its sample count), and the error
reflects how much the score would move on another draw of problems and samples. With one problem the
standard error is reported as 0.0.

Against NeMo-Skills' `evaluation/metrics/base.py`: `pass@1` here is their `pass@1[k]` (mean correctness over
samples); `pass@k` here is the unbiased estimator of Chen et al. (2021) over all n samples, whereas theirs is
"any of the first k samples correct"; `maj@k` uses the first k samples, as theirs does, with ties going to
the answer seen first (as their `Counter.most_common` does), but groups answers by an equivalence callable
rather than by exact string.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

Equivalent = Callable[[str, str], bool]
"""`equivalent(representative, candidate)`: the group's first answer goes in the gold position."""


@dataclass(frozen=True)
class Estimate:
    """A score over problems and its standard error, both as fractions."""

    value: float
    stderr: float


@dataclass(frozen=True)
class SampleRecord:
    """One graded sample, as the evaluator writes it."""

    problem_id: str
    sample_index: int
    answer: str | None
    correct: bool
    finish_reason: str | None
    output_tokens: int
    rule: str


@dataclass(frozen=True)
class BenchmarkSummary:
    """The scores of one benchmark: what `EvalRun.status.scores[benchmark]` reports."""

    benchmark: str
    num_problems: int
    samples_per_problem: int
    pass_at_1: Estimate
    pass_at_k: Mapping[int, Estimate]
    majority_at_k: Mapping[int, Estimate]
    no_answer_rate: float
    truncation_rate: float
    mean_output_tokens: float
    grader_timeouts: int


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased probability that at least one of k samples drawn from n (c of them correct) is correct.

    1 - C(n-c, k) / C(n, k), computed as 1 - prod_{i=n-c+1}^{n} (1 - k/i) (Chen et al. 2021), which never
    forms the huge binomials.
    """
    if not 0 <= c <= n:
        raise ValueError(f"c: must be within [0, n={n}], got {c}")
    if not 1 <= k <= n:
        raise ValueError(f"k: must be within [1, n={n}], got {k}")
    if n - c < k:
        return 1.0  # every k-subset holds a correct sample
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def mean_with_stderr(per_problem: Sequence[float]) -> Estimate:
    """Mean of per-problem scores and its standard error (ddof=1; 0.0 for a single problem)."""
    if not per_problem:
        raise ValueError("no problems to score")
    mean = math.fsum(per_problem) / len(per_problem)
    if len(per_problem) < 2:
        return Estimate(mean, 0.0)
    variance = math.fsum((x - mean) ** 2 for x in per_problem) / (len(per_problem) - 1)
    return Estimate(mean, math.sqrt(variance / len(per_problem)))


def pass_at_1(correct: Sequence[Sequence[bool]]) -> Estimate:
    """Mean correctness over each problem's samples, averaged over problems."""
    return mean_with_stderr([_mean(_non_empty(row, i)) for i, row in enumerate(correct)])


def mean_pass_at_k(correct: Sequence[Sequence[bool]], k: int) -> Estimate:
    """Unbiased pass@k per problem (from all of its samples), averaged over problems."""
    return mean_with_stderr([pass_at_k(len(row), sum(row), k) for row in correct])


def majority_vote(
    answers: Sequence[str | None], correct: Sequence[bool], *, equivalent: Equivalent | None = None
) -> bool:
    """Whether the most common answer is correct.

    Answers are grouped into equivalence classes: exact duplicates first (cheap), then each new distinct
    answer is compared with the first answer of every existing group, joining the first that is
    `equivalent`; without `equivalent`, answers are taken as pre-normalised keys. The largest group wins;
    among tied groups, the one whose first answer came earliest. A group is as correct as its first answer.
    No-answer samples (None) never vote, so a problem with no answer at all counts as wrong.
    """
    if len(answers) != len(correct):
        raise ValueError(f"answers and correct differ in length: {len(answers)} != {len(correct)}")
    group_of: dict[str, int] = {}
    representatives: list[str] = []
    votes: list[int] = []
    group_correct: list[bool] = []
    for answer, is_correct in zip(answers, correct, strict=True):
        if answer is None:
            continue
        group = group_of.get(answer)
        if group is None and equivalent is not None:
            group = next((g for g, rep in enumerate(representatives) if equivalent(rep, answer)), None)
        if group is None:
            group = len(representatives)
            representatives.append(answer)
            votes.append(0)
            group_correct.append(is_correct)
        group_of[answer] = group
        votes[group] += 1
    if not votes:
        return False
    winner = votes.index(max(votes))  # index() is the first maximum: the earliest-seen group wins ties
    return group_correct[winner]


def majority_at_k(
    answers: Sequence[Sequence[str | None]],
    correct: Sequence[Sequence[bool]],
    k: int,
    *,
    equivalent: Equivalent | None = None,
) -> Estimate:
    """maj@k: majority vote over each problem's first k samples, averaged over problems."""
    if len(answers) != len(correct):
        raise ValueError(f"answers and correct differ in problems: {len(answers)} != {len(correct)}")
    per_problem = []
    for i, (row_answers, row_correct) in enumerate(zip(answers, correct, strict=True)):
        if len(row_answers) < k:
            raise ValueError(f"problem {i}: maj@{k} needs {k} samples, got {len(row_answers)}")
        per_problem.append(float(majority_vote(row_answers[:k], row_correct[:k], equivalent=equivalent)))
    return mean_with_stderr(per_problem)


def no_answer_rate(answers: Iterable[Sequence[str | None]]) -> float:
    """Fraction of all samples with no extracted answer."""
    flags = [answer is None for row in answers for answer in row]
    return _mean(flags) if flags else 0.0


def truncation_rate(finish_reasons: Iterable[str | None]) -> float:
    """Fraction of samples cut off by the token limit (vLLM's finish_reason "length")."""
    flags = [reason == "length" for reason in finish_reasons]
    return _mean(flags) if flags else 0.0


def mean_output_tokens(output_tokens: Iterable[int]) -> float:
    """Mean generated tokens per sample."""
    tokens = list(output_tokens)
    return _mean(tokens) if tokens else 0.0


def summarize(
    benchmark: str,
    records: Iterable[SampleRecord],
    *,
    ks: Sequence[int] = (),
    majority_ks: Sequence[int] = (),
    equivalent: Equivalent | None = None,
) -> BenchmarkSummary:
    """Fill a `BenchmarkSummary` from per-sample records (any order; every problem needs the same count)."""
    by_problem: dict[str, dict[int, SampleRecord]] = defaultdict(dict)
    all_records: list[SampleRecord] = []
    for record in records:
        samples = by_problem[record.problem_id]
        if record.sample_index in samples:
            raise ValueError(f"{benchmark}: problem {record.problem_id!r} sample {record.sample_index} appears twice")
        samples[record.sample_index] = record
        all_records.append(record)
    if not by_problem:
        raise ValueError(f"{benchmark}: no samples to score")
    rows = [[samples[i] for i in sorted(samples)] for samples in by_problem.values()]
    counts = {len(row) for row in rows}
    if len(counts) != 1:
        raise ValueError(f"{benchmark}: problems have different sample counts {sorted(counts)}; expected one")
    correct = [[r.correct for r in row] for row in rows]
    answers = [[r.answer for r in row] for row in rows]
    return BenchmarkSummary(
        benchmark=benchmark,
        num_problems=len(rows),
        samples_per_problem=counts.pop(),
        pass_at_1=pass_at_1(correct),
        pass_at_k={k: mean_pass_at_k(correct, k) for k in ks},
        majority_at_k={k: majority_at_k(answers, correct, k, equivalent=equivalent) for k in majority_ks},
        no_answer_rate=no_answer_rate(answers),
        truncation_rate=truncation_rate(r.finish_reason for r in all_records),
        mean_output_tokens=mean_output_tokens(r.output_tokens for r in all_records),
        grader_timeouts=sum(r.rule == "timeout" for r in all_records),
    )


def _mean(values: Sequence[float] | Sequence[bool] | Sequence[int]) -> float:
    return math.fsum(float(v) for v in values) / len(values)


def _non_empty(row: Sequence[bool], index: int) -> Sequence[bool]:
    if not row:
        raise ValueError(f"problem {index}: no samples")
    return row
