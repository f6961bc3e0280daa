"""cotlab.trainer.grading.metrics, against numbers worked out by hand."""

from __future__ import annotations

import math

import pytest

from cotlab.api.evalrun import MAJORITY_RULES, MajorityRule
from cotlab.trainer.grading.majority import equivalence_classes, majority_vote
from cotlab.trainer.grading.metrics import (
    BenchmarkSummary,
    Estimate,
    SampleRecord,
    majority_at_k,
    mean_pass_at_k,
    mean_with_stderr,
    no_answer_rate,
    pass_at_1,
    pass_at_k,
    summarize,
    truncation_rate,
)


@pytest.mark.parametrize(
    ("n", "c", "k", "want"),
    [
        (10, 3, 1, 0.3),  # pass@1 is c/n
        (4, 2, 2, 5 / 6),  # 1 - C(2,2)/C(4,2) = 1 - 1/6
        (6, 1, 3, 0.5),  # 1 - C(5,3)/C(6,3) = 1 - 10/20
        (5, 0, 3, 0.0),  # nothing correct
        (3, 2, 2, 1.0),  # n-c = 1 < k: every pair holds a correct sample
        (64, 1, 64, 1.0),  # all samples drawn
        (64, 32, 2, 1 - (32 * 31) / (64 * 63)),  # 1 - C(32,2)/C(64,2) = 1 - 496/2016
    ],
    ids=["k1", "n4c2k2", "n6c1k3", "none-correct", "all-subsets-hit", "k-equals-n", "n64c32k2"],
)
def test_pass_at_k(n: int, c: int, k: int, want: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(want, abs=1e-12)


def test_pass_at_k_is_stable_for_large_n() -> None:
    # C(1000, 500) overflows a float; the product form never builds it. With c=1: 1 - (1 - 10/1000) = 0.01
    assert pass_at_k(1000, 1, 10) == pytest.approx(0.01)
    assert 0.0 < pass_at_k(1000, 500, 3) <= 1.0


@pytest.mark.parametrize(
    ("n", "c", "k"), [(4, 5, 1), (4, -1, 1), (4, 2, 0), (4, 2, 5)], ids=["c>n", "c<0", "k=0", "k>n"]
)
def test_pass_at_k_rejects_impossible_counts(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError, match=r"^[ck]: must be within"):
        pass_at_k(n, c, k)


def test_pass_at_1_mean_of_problem_means_with_stderr() -> None:
    # per problem 1/4 and 2/4 -> mean 0.375; deviations +-0.125 -> sample variance 2*0.015625/1 = 0.03125,
    # std 0.17678; stderr = 0.17678/sqrt(2) = 0.125
    got = pass_at_1([[True, False, False, False], [True, True, False, False]])
    assert got.value == pytest.approx(0.375)
    assert got.stderr == pytest.approx(0.125)


def test_problems_weigh_the_same_whatever_their_sample_count() -> None:
    # 1/1 and 0/3: mean of problem means is 0.5 (pooled samples would give 0.25)
    assert pass_at_1([[True], [False, False, False]]).value == pytest.approx(0.5)


def test_single_problem_has_zero_stderr() -> None:
    assert mean_with_stderr([0.25]) == Estimate(0.25, 0.0)


def test_mean_pass_at_k() -> None:
    # problem 1: n4 c2 k2 -> 5/6; problem 2: n4 c0 -> 0; mean 5/12; stderr = |5/6 - 0| / 2 = 5/12
    # (two values: sample std = |a-b|/sqrt(2), divided by sqrt(2))
    got = mean_pass_at_k([[True, True, False, False], [False] * 4], 2)
    assert got.value == pytest.approx(5 / 12)
    assert got.stderr == pytest.approx(5 / 12)


@pytest.mark.parametrize(
    ("answers", "correct", "want"),
    [
        (["5", "6", "6"], [True, False, False], 0.0),  # 6 has two votes
        (["5", "6", "6", "5"], [True, False, False, True], 0.5),  # a 2-2 tie shares the credit
        (["6", "5", "5", "6"], [False, True, True, False], 0.5),  # whichever answer came first
        (["7", "3", "3", "7", "9"], [True, False, False, True, False], 0.5),
        ([None, None, None, "7"], [False, False, False, True], 1.0),  # no-answer never wins
        ([None, None], [False, False], 0.0),  # all no-answer: wrong
        ([], [], 0.0),
    ],
    ids=["plurality", "tie", "tie-swapped", "tie-beside-a-single", "none-never-wins", "all-none", "empty"],
)
def test_majority_vote_by_exact_key(answers: list[str | None], correct: list[bool], want: float) -> None:
    assert majority_vote(answers, correct) == want


# One tie, every rule: "7" (right) and "5" (wrong) have two votes each, "7" was sampled first.
TIE = (["7", "5", "5", "7"], [True, False, False, True])


@pytest.mark.parametrize(
    ("rule", "answers", "correct", "want"),
    [
        # NeMo-Skills 2a2886e3..098f04d9 (the study's 0f7bd73): Counter.most_common(1), the first-seen pair wins.
        ("first-sampled", *TIE, 1.0),
        ("first-sampled", TIE[0][::-1], TIE[1][::-1], 1.0),  # "7" still first
        ("first-sampled", ["5", "7", "7", "5"], [False, True, True, False], 0.0),  # now "5" came first
        ("first-sampled", [None, "5", "7", "7", "5"], [False, False, True, True, False], 0.0),  # None never votes
        ("first-sampled", ["1/2", "0.5", "x", "x"], [True, True, False, False], 0.0),  # exact text: "x" has 2
        # NeMo-Skills 098f04d9..d20fbb2c: votes sorted first, so the smallest pair wins whatever the order.
        ("sorted", *TIE, 0.0),  # "5" < "7"
        ("sorted", ["5", "7", "7", "5"], [False, True, True, False], 0.0),
        ("sorted", ["12", "9", "9", "12"], [True, False, False, True], 1.0),  # strings: "12" < "9"
        ("sorted", ["1/2", "0.5", "0.5", "x"], [True, True, True, False], 1.0),  # no grouping: "0.5" has 2
        # NeMo-Skills since d20fbb2c: the tied pairs share the credit.
        ("fractional", *TIE, 0.5),
        ("fractional", ["7", "5", "3"], [True, False, False], 1 / 3),
        ("fractional", [None, None], [False, False], 0.0),
        # cotlab's: classes of equivalent answers (here exact keys), tied classes share the credit.
        ("equivalence", *TIE, 0.5),
    ],
    ids=[
        "first-sampled-tie",
        "first-sampled-tie-reversed",
        "first-sampled-other-first",
        "first-sampled-skips-none",
        "first-sampled-exact",
        "sorted-tie",
        "sorted-tie-swapped",
        "sorted-is-by-string",
        "sorted-exact",
        "fractional-tie",
        "fractional-three",
        "fractional-none",
        "equivalence-tie",
    ],
)
def test_each_vote_rule_on_a_tie(rule: str, answers: list[str | None], correct: list[bool], want: float) -> None:
    assert majority_vote(answers, correct, rule=rule) == pytest.approx(want)  # type: ignore[arg-type]


@pytest.mark.parametrize(("rule", "want"), [(r, {"first-sampled": [1.0, 0.0]}.get(r)) for r in MAJORITY_RULES])
def test_only_first_sampled_depends_on_the_sample_order(rule: MajorityRule, want: list[float] | None) -> None:
    # The same tied votes in two sample orders: the right "7" sampled first, then the wrong "5" sampled first.
    orders = [(["7", "5", "5", "7"], [True, False, False, True]), (["5", "7", "7", "5"], [False, True, True, False])]
    scores = [majority_vote(answers, correct, rule=rule) for answers, correct in orders]
    assert scores == (want or [scores[0], scores[0]])


_HALVES = {"1/2": 0.5, "0.5": 0.5, "\\frac12": 0.5}


def _same_number(pairs: list[tuple[str, str]]) -> list[bool]:
    return [_HALVES.get(a, a) == _HALVES.get(b, b) for a, b in pairs]


def test_majority_vote_groups_equivalent_answers() -> None:
    # exact keys: "3" has 2 votes vs 1 each for the spellings of 1/2; grouped: {1/2, 0.5, \frac12} has 3
    answers: list[str | None] = ["3", "1/2", "3", "0.5", "\\frac12"]
    correct = [False, True, False, True, True]
    assert majority_vote(answers, correct) == 0.0
    assert majority_vote(answers, correct, equivalent=_same_number) == 1.0


def test_equivalence_classes_do_not_depend_on_sample_order() -> None:
    # Graded equivalence need not be transitive: a~b and b~c but not a~c. Joining "the first group that
    # matches" would split or merge by order; connected components do not.
    links = {("a", "b"), ("b", "c")}

    def linked(pairs: list[tuple[str, str]]) -> list[bool]:
        return [pair in links for pair in pairs]

    assert equivalence_classes(["c", "a", "b"], linked) == {"a": "a", "b": "a", "c": "a"}
    for answers in (["a", "c", "c", "b", "d", "d"], ["d", "b", "c", "d", "a", "c"]):
        correct = [a != "d" for a in answers]
        assert majority_vote(answers, correct, equivalent=linked) == 1.0


def test_majority_vote_asks_about_all_pairs_in_one_batch() -> None:
    calls: list[list[tuple[str, str]]] = []

    def counting(pairs: list[tuple[str, str]]) -> list[bool]:
        calls.append(list(pairs))
        return [a == b for a, b in pairs]

    majority_vote(["2", "1", "3", "2", "1"], [False, True, False, False, True], equivalent=counting)
    assert calls == [[("1", "2"), ("1", "3"), ("2", "3")]]  # each pair once, smaller answer first


def test_summarize_batches_every_problem_and_k_into_one_check() -> None:
    calls: list[list[tuple[str, str]]] = []

    def counting(pairs: list[tuple[str, str]]) -> list[bool]:
        calls.append(list(pairs))
        return _same_number(pairs)

    records = [
        _record(p, i, a, a in _HALVES)
        for p, row in (("p1", ["1/2", "3", "0.5", "3"]), ("p2", ["0.5", "\\frac12", "4", "4"]))
        for i, a in enumerate(row)
    ]
    got = summarize("x", records, majority_ks=(2, 4), equivalent=counting)
    assert len(calls) == 1
    assert sorted(calls[0]) == calls[0] and len(set(calls[0])) == len(calls[0])
    # maj@2: p1 {1/2} vs {3} tie -> 0.5, p2 {0.5, \frac12} -> 1; maj@4: p1 halves 2 vs 3 2 -> 0.5, p2 2-2 -> 0.5
    assert got.majority_at_k == {2: Estimate(0.75, 0.25), 4: Estimate(0.5, 0.0)}


def test_majority_at_k_uses_first_k_samples() -> None:
    # problem 1, first 3: 4,4,5 -> 4 (correct); all 5: 4,4,5,5,5 -> 5 (wrong)
    # problem 2, first 3: 1,2,2 -> 2 (correct); all 5: 1,2,2,1,1 -> 1 (wrong)
    answers: list[list[str | None]] = [["4", "4", "5", "5", "5"], ["1", "2", "2", "1", "1"]]
    correct = [[a == "4" for a in answers[0]], [a == "2" for a in answers[1]]]
    assert majority_at_k(answers, correct, 3) == Estimate(1.0, 0.0)
    assert majority_at_k(answers, correct, 5) == Estimate(0.0, 0.0)
    with pytest.raises(ValueError, match="problem 0: maj@6 needs 6 samples, got 5"):
        majority_at_k(answers, correct, 6)


def test_rates() -> None:
    assert no_answer_rate([[None, "1"], [None, None]]) == pytest.approx(0.75)
    assert truncation_rate(["stop", "length", "length", None]) == pytest.approx(0.5)


def _record(problem: str, index: int, answer: str | None, correct: bool, **overrides: object) -> SampleRecord:
    fields: dict[str, object] = {
        "problem_id": problem,
        "sample_index": index,
        "answer": answer,
        "correct": correct,
        "finish_reason": "stop",
        "output_tokens": 100,
        "rule": "integer" if answer else "no_answer",
    }
    fields.update(overrides)
    return SampleRecord(**fields)  # type: ignore[arg-type]


def test_summarize() -> None:
    records = [
        # given out of order: summarize sorts by sample_index
        _record("p2", 1, None, False, finish_reason="length", output_tokens=400),
        _record("p1", 0, "12", True),
        _record("p1", 1, "12", True),
        _record("p1", 2, "13", False, rule="timeout"),
        _record("p1", 3, "12", True),
        _record("p2", 0, "7", False),
        _record("p2", 2, "8", True),
        _record("p2", 3, "7", False),
    ]
    got = summarize("aime24", records, ks=(2,), majority_ks=(4,))
    # pass@1: p1 3/4, p2 1/4 -> 0.5, stderr |0.75-0.25|/2 = 0.25
    # pass@2: p1 n4 c3 -> 1 (n-c=1<2), p2 n4 c1 -> 1 - C(3,2)/C(4,2) = 0.5 -> 0.75, stderr 0.25
    # maj@4: p1 "12" x3 right; p2 "7" x2 wrong -> 0.5, stderr 0.5
    assert got == BenchmarkSummary(
        benchmark="aime24",
        num_problems=2,
        samples_per_problem=4,
        pass_at_1=Estimate(0.5, 0.25),
        pass_at_k={2: Estimate(0.75, 0.25)},
        majority_at_k={4: Estimate(0.5, 0.5)},
        no_answer_rate=1 / 8,
        truncation_rate=1 / 8,
        mean_output_tokens=(7 * 100 + 400) / 8,
        grader_timeouts=1,
    )


def test_summarize_rejects_bad_records() -> None:
    with pytest.raises(ValueError, match="problem 'p1' sample 0 appears twice"):
        summarize("x", [_record("p1", 0, "1", True), _record("p1", 0, "1", True)])
    with pytest.raises(ValueError, match=r"different sample counts \[1, 2\]"):
        summarize("x", [_record("p1", 0, "1", True), _record("p2", 0, "1", True), _record("p2", 1, "1", True)])
    with pytest.raises(ValueError, match="no samples"):
        summarize("x", [])


def test_estimates_are_finite() -> None:
    assert all(math.isfinite(v) for v in (pass_at_1([[True]]).stderr, pass_at_1([[True], [False]]).stderr))
