"""Score many-sample evaluations: pass@1, unbiased pass@k, maj@k and the rates beside them, defined once.

Inputs are per-problem lists in sample order (a correctness matrix, an answer matrix); every score is a
fraction in [0, 1] (the CLI shows percent) with a standard error over problems:

    value  = mean over problems of the per-problem score
    stderr = sample standard deviation (ddof=1) of the per-problem scores / sqrt(number of problems)

so problems are the sampling unit (each problem weighs the same whatever its sample count), and the error
reflects how much the score would move on another draw of problems and samples. With one problem the
standard error is reported as 0.0.

Against NeMo-Skills' `evaluation/metrics/base.py`: `pass@1` here is their `pass@1[avg-of-k]` (mean correctness
over samples); `pass@k` here is the unbiased estimator of Chen et al. (2021) over all n samples, whereas theirs is
"any of the first k samples correct"; `maj@k` uses the first k samples, as theirs does, and votes by one of the
rules in `cotlab.trainer.grading.majority`: cotlab's equivalence classes, or their exact-string votes.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cotlab.api.evalrun import MajorityRule
from cotlab.trainer.grading.majority import EquivalenceCheck, answer_pairs, majority_vote


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


def majority_at_k(
    answers: Sequence[Sequence[str | None]],
    correct: Sequence[Sequence[bool]],
    k: int,
    *,
    rule: MajorityRule = "equivalence",
    equivalent: EquivalenceCheck | None = None,
) -> Estimate:
    """maj@k: majority vote over each problem's first k samples, averaged over problems.

    With the equivalence rule every problem's pairs go to `equivalent` in one batch."""
    if len(answers) != len(correct):
        raise ValueError(f"answers and correct differ in problems: {len(answers)} != {len(correct)}")
    for i, row_answers in enumerate(answers):
        if len(row_answers) < k:
            raise ValueError(f"problem {i}: maj@{k} needs {k} samples, got {len(row_answers)}")
    if rule == "equivalence" and equivalent is not None:
        equivalent = batched_equivalence([row[:k] for row in answers], equivalent)
    return mean_with_stderr(
        [
            majority_vote(row_answers[:k], row_correct[:k], rule=rule, equivalent=equivalent)
            for row_answers, row_correct in zip(answers, correct, strict=True)
        ]
    )


def batched_equivalence(rows: Iterable[Iterable[str | None]], equivalent: EquivalenceCheck) -> EquivalenceCheck:
    """`equivalent` asked once about every pair of distinct answers of every row; the result answers later
    questions about those pairs from memory (any other pair counts as not equivalent)."""
    pairs = sorted({pair for row in rows for pair in answer_pairs(row)})
    verdicts = equivalent(pairs) if pairs else []
    if len(verdicts) != len(pairs):
        raise ValueError(f"equivalence check answered {len(verdicts)} of {len(pairs)} pairs")
    same = {pair for pair, verdict in zip(pairs, verdicts, strict=True) if verdict}
    return lambda asked: [pair in same for pair in asked]


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
    majority_rule: MajorityRule = "equivalence",
    equivalent: EquivalenceCheck | None = None,
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
    if majority_ks and majority_rule == "equivalence" and equivalent is not None:
        # One batch for every k: the pairs of the largest k's samples hold those of every smaller k.
        equivalent = batched_equivalence([row[: max(majority_ks)] for row in answers], equivalent)
    return BenchmarkSummary(
        benchmark=benchmark,
        num_problems=len(rows),
        samples_per_problem=counts.pop(),
        pass_at_1=pass_at_1(correct),
        pass_at_k={k: mean_pass_at_k(correct, k) for k in ks},
        majority_at_k={
            k: majority_at_k(answers, correct, k, rule=majority_rule, equivalent=equivalent) for k in majority_ks
        },
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
