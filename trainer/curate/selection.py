"""Which traces make the dataset: the filters, then one of the selection strategies; pure and seeded."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cotlab.api.tracedataset import Filters, ProblemSelection, Selection
from cotlab.trainer.core.errors import InvalidInputError
from cotlab.trainer.curate.records import TraceRecord

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


@dataclass(frozen=True)
class Candidate:
    """A record with its formatted trace (the assistant turn) and what filters and strategies measure."""

    record: TraceRecord
    trace: str
    tokens: int | None  # of `trace`; None without a tokenizer
    correct: bool | None = None  # the trace's boxed answer matches the answer; None when not graded

    @property
    def length(self) -> int:
        """Tokens when counted, else characters: what longest/shortest rank by."""
        return self.tokens if self.tokens is not None else len(self.trace)


def choose_problems(records: Sequence[TraceRecord], problems: ProblemSelection) -> list[str]:
    """The problem ids every selected trace must solve, in the dataset's order: the given ids, or a seeded
    sample of `count` among the problems (in id order) that have a trace of every stage in `withStages`.

    Every dataset that loads the same rows and asks alike gets the same problems, whatever it keeps afterwards
    (the study's arms differ only in the trace type they keep).
    """
    stages: dict[str, set[str | None]] = {}
    for record in records:
        stages.setdefault(record.problem_id or "", set()).add(record.stage)
    if problems.ids is not None:
        repeated = sorted({i for i in problems.ids if problems.ids.count(i) > 1})
        if repeated:
            raise InvalidInputError(f"spec.select.problems.ids: {repeated[:5]} appear more than once")
        missing = [i for i in problems.ids if i not in stages]
        if missing:
            raise InvalidInputError(
                f"spec.select.problems.ids: {len(missing)} of {len(problems.ids)} not among the source's problems,"
                f" e.g. {missing[:5]}; ids are fields.problemId, or the first 16 hex digits of the problem text's"
                " sha256 (see a dataset's manifest.json `problems`)"
            )
        return list(problems.ids)
    wanted = set(problems.with_stages)
    eligible = sorted(pid for pid, have in stages.items() if wanted <= have)
    assert problems.count is not None  # the model validator requires ids or count
    if problems.count > len(eligible):
        condition = f" with a trace of every stage in {sorted(wanted)}" if wanted else ""
        raise InvalidInputError(
            f"spec.select.problems.count: {problems.count} problems wanted, but the source has {len(eligible)}"
            f"{condition}; lower count or change withStages"
        )
    return random.Random(problems.seed).sample(eligible, problems.count)


def of_problems(records: Sequence[TraceRecord], problem_ids: Sequence[str]) -> list[TraceRecord]:
    """The records of these problems, in the problems' order (source order within a problem)."""
    rank = {pid: i for i, pid in enumerate(problem_ids)}
    kept = [r for r in records if r.problem_id in rank]
    return sorted(kept, key=lambda r: rank[r.problem_id or ""])


def passes_filters(candidate: Candidate, filters: Filters) -> bool:
    """Whether a candidate may be selected (correctOnly needs `correct` set; unknown counts as wrong)."""
    if filters.stages and candidate.record.stage not in filters.stages:
        return False
    if filters.min_tokens is not None and (candidate.tokens is None or candidate.tokens < filters.min_tokens):
        return False
    if filters.max_tokens is not None and (candidate.tokens is None or candidate.tokens > filters.max_tokens):
        return False
    return not filters.correct_only or candidate.correct is True


def difficulty_rank(value: str | None) -> float | None:
    """A difficulty as a number: "7", "2.5", or the number in "Level 5"; None when there is none ("Level ?")."""
    if value is None:
        return None
    match = _NUMBER.search(value)
    return float(match.group()) if match else None


def select_traces(candidates: Sequence[Candidate], selection: Selection) -> list[Candidate]:
    """`selection.count` candidates (all when unset) in the order they go into the dataset.

    - random: a seeded sample, in sample order.
    - shortest / longest: by `length`, ties by id.
    - hardest: by difficulty, highest first (none last), ties in a seeded shuffled order.
    - diverse: round-robin over the `diversityField` groups in name order, each group seeded-shuffled.

    Raises `InvalidInputError` when fewer than `count` candidates passed the filters.
    """
    count = len(candidates) if selection.count is None else selection.count
    if count > len(candidates):
        raise InvalidInputError(
            f"spec.select.count: {count} traces wanted, but only {len(candidates)} passed the filters;"
            " lower count or loosen spec.select.filters"
        )
    rng = random.Random(selection.seed)
    if selection.strategy == "random":
        return rng.sample(list(candidates), count)
    if selection.strategy == "shortest":
        return sorted(candidates, key=lambda c: (c.length, c.record.id))[:count]
    if selection.strategy == "longest":
        return sorted(candidates, key=lambda c: (-c.length, c.record.id))[:count]
    if selection.strategy == "hardest":
        shuffled = list(candidates)
        rng.shuffle(shuffled)
        return sorted(shuffled, key=_hardest_first)[:count]  # sorted is stable: the shuffle breaks ties
    return _round_robin(candidates, count, rng)


def _hardest_first(candidate: Candidate) -> tuple[bool, float]:
    rank = difficulty_rank(candidate.record.difficulty)
    return (rank is None, -(rank or 0.0))


def _round_robin(candidates: Sequence[Candidate], count: int, rng: random.Random) -> list[Candidate]:
    groups: dict[str, list[Candidate]] = {}
    for candidate in candidates:
        groups.setdefault(candidate.record.group or "", []).append(candidate)
    queues = []
    for name in sorted(groups):
        members = groups[name]
        rng.shuffle(members)
        queues.append(members)
    picked: list[Candidate] = []
    for turn in range(max((len(q) for q in queues), default=0)):
        picked.extend(q[turn] for q in queues if turn < len(q))
    return picked[:count]
