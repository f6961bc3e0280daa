"""What a study report shows beyond `compare`'s table, read from the same places compare reads.

An arm is one EvalRun per training seed (`arms.Arm`). Per-problem outcomes pool the samples of all of an arm's
runs, read from the same per-sample records compare bootstraps (`evaluations.read_records`, cut to each spec's
sample count as `evaluations.correctness` cuts them); the loss curves come from every seed's FineTuneRun
(`steps.jsonl`), the training-set statistics from the arms' TraceDataset status. Nothing here draws or formats.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pydantic import ValidationError

from cotlab.api.tracking import STEPS_FILE, StepMetrics

from ..terminal.errors import CliError
from ..terminal.output import note
from .evaluations import correctness, gold_answers, read_records

if TYPE_CHECKING:
    from cotlab.trainer.evaluate.stage import SampleLine

    from .arms import Arm, Evaluation
    from .artifacts import ArtifactStore
    from .comparison import Comparison

HEAD_CHARS = 600  # of a long completion: its start (how it set out) ...
TAIL_CHARS = 1400  # ... and its end (where the answer is); the middle is cut


@dataclass(frozen=True)
class SampleView:
    """One sampled completion as the report shows it."""

    evalrun: str  # the arm's EvalRun (one training seed) that sampled it
    seed: int | None  # that run's training seed; None for an untrained model
    index: int
    answer: str | None
    correct: bool
    finish_reason: str | None
    output_tokens: int
    text: str | None  # None: not embedded (beyond --samples-per-cell)


@dataclass(frozen=True)
class CellSamples:
    """The samples behind one heat-map cell: one arm on one problem, every training seed's samples in run order."""

    arm: int
    benchmark: str
    problem_id: str
    problem: str | None
    gold: str | None
    samples: list[SampleView]

    @property
    def solved(self) -> int:
        return sum(s.correct for s in self.samples)


@dataclass(frozen=True)
class Outcomes:
    """One benchmark's heat map: problems in a stable order, the fraction of samples correct per arm and problem
    (None: the arm has no records of it)."""

    benchmark: str
    problems: list[str]
    rates: list[list[float | None]]


@dataclass(frozen=True)
class Curve:
    """A FineTuneRun's training curve (one training seed of its arms) and the rows (arms) that evaluate its model."""

    fine_tune_run: str
    labels: list[str]
    seed: int  # spec.training.seed
    steps: list[StepMetrics]

    @property
    def name(self) -> str:
        """How a legend names it: "qwen-qwq-20-s1 (qwq-20, seed 1)"."""
        return f"{self.fine_tune_run} ({', '.join(self.labels)}, seed {self.seed})"


@dataclass(frozen=True)
class TrainingSet:
    """A TraceDataset's size and length statistics, and the rows that trained on it."""

    name: str
    labels: list[str]
    count: int | None
    tokens: dict[str, int] = field(default_factory=dict)  # min, p50, p90, max
    stages: dict[str, int] = field(default_factory=dict)
    correct_rate: float | None = None


def natural_key(problem_id: str) -> list[tuple[int, int | str]]:
    """Problem ids in a stable, human order: "aime24-2" before "aime24-10"."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", problem_id) if part]


def cut_text(text: str, head: int = HEAD_CHARS, tail: int = TAIL_CHARS) -> str:
    """A completion as embedded: whole when short, else its start and its end with the cut said in between."""
    if len(text) <= head + tail:
        return text
    return f"{text[:head]}\n… [{len(text) - head - tail} characters cut] …\n{text[-tail:]}"


def gather_outcomes(
    arms: list[Arm], comparison: Comparison, store: ArtifactStore, *, samples_per_cell: int
) -> tuple[list[Outcomes], dict[tuple[int, str, str], CellSamples]]:
    """Per benchmark, every arm's fraction correct on every problem over all its seeds' samples, and the samples
    behind each cell (`samples_per_cell` completions embedded per arm and problem, shared out over the seeds)."""
    cells: dict[tuple[int, str, str], CellSamples] = {}
    outcomes = []
    for benchmark in comparison.benchmarks:
        by_arm: list[dict[str, list[bool]]] = []
        for index, arm in enumerate(arms):
            if not all(benchmark in member.scores for member in arm.runs):  # as compare leaves the cell empty
                by_arm.append({})
                continue
            try:
                read = [(member, read_records(member.run, benchmark, store)) for member in arm.runs]
            except CliError as err:
                note(f"{comparison.rows[index].label}: no per-problem outcomes on {benchmark} ({err.message})")
                by_arm.append({})
                continue
            pooled: dict[str, list[bool]] = {}
            lines: dict[str, list[SampleView]] = {}
            for position, (member, records) in enumerate(read):
                samples = member.run.spec.sampling.samples
                for problem_id, correct in correctness(records, samples).items():
                    pooled.setdefault(problem_id, []).extend(correct)
                embed = _share(samples_per_cell, len(read), position)
                for problem_id, found in _by_problem(records, samples).items():
                    lines.setdefault(problem_id, []).extend(
                        _view(member, line, embed=i < embed) for i, line in enumerate(found)
                    )
            by_arm.append(pooled)
            gold = gold_answers(arm.run, benchmark, store)
            for problem_id, views in lines.items():
                problem = gold.get(problem_id)
                cells[(index, benchmark, problem_id)] = CellSamples(
                    arm=index,
                    benchmark=benchmark,
                    problem_id=problem_id,
                    problem=problem.problem if problem else None,
                    gold=problem.answer if problem else None,
                    samples=views,
                )
        problems = sorted({p for rows in by_arm for p in rows}, key=natural_key)
        rates = [[(sum(rows[p]) / len(rows[p]) if rows.get(p) else None) for p in problems] for rows in by_arm]
        outcomes.append(Outcomes(benchmark=benchmark, problems=problems, rates=rates))
    return outcomes, cells


def _share(total: int, runs: int, position: int) -> int:
    """The run at `position`'s part of `total` embedded completions: as even as can be, the first runs first."""
    return total // runs + (1 if position < total % runs else 0)


def _by_problem(records: list[SampleLine], samples: int) -> dict[str, list[SampleLine]]:
    found: dict[str, list[SampleLine]] = {}
    for record in records:
        if record.sample_index < samples:
            found.setdefault(record.problem_id, []).append(record)
    return {p: sorted(lines, key=lambda r: r.sample_index) for p, lines in found.items()}


def _view(member: Evaluation, line: SampleLine, *, embed: bool) -> SampleView:
    return SampleView(
        evalrun=member.name,
        seed=member.seed,
        index=line.sample_index,
        answer=line.answer,
        correct=line.correct,
        finish_reason=line.finish_reason,
        output_tokens=line.output_tokens,
        text=cut_text(line.text) if embed else None,
    )


def gather_curves(arms: list[Arm], comparison: Comparison, store: ArtifactStore) -> list[Curve]:
    """Each FineTuneRun behind the arms once (every training seed's), with the steps its rank 0 recorded (runs
    without any are noted)."""
    labels: dict[str, list[str]] = {}
    runs = {}
    for arm, row in zip(arms, comparison.rows, strict=True):
        for member in arm.runs:
            if member.fine_tune is not None:
                name = member.fine_tune.metadata.name
                runs[name] = member.fine_tune
                labels.setdefault(name, []).append(row.label)
    curves = []
    for name, run in runs.items():
        outputs = run.status.outputs if run.status else None
        if outputs is None or not outputs.metrics:
            note(f"finetunerun/{name} records no training curves (status.outputs.metrics)")
            continue
        uri = outputs.metrics.rstrip("/") + f"/{STEPS_FILE}"
        try:
            lines = list(store.iter_lines(uri))
        except CliError as err:
            note(f"finetunerun/{name}: no training curve ({err.message})")
            continue
        steps: dict[int, StepMetrics] = {}
        for line in lines:
            try:
                record = StepMetrics.model_validate_json(line)
            except ValidationError:
                continue  # a line cut by a kill mid-write
            steps[record.step] = record  # a replayed step (after a resume): the newest
        curves.append(
            Curve(
                fine_tune_run=name,
                labels=list(dict.fromkeys(labels[name])),
                seed=run.spec.training.seed,
                steps=[steps[k] for k in sorted(steps)],
            )
        )
    return curves


def gather_training_sets(arms: list[Arm], comparison: Comparison) -> list[TrainingSet]:
    """Each arm's TraceDataset once (its seeds train on one dataset: `arms.why_not_seeds`), with its status
    statistics."""
    found: dict[str, TrainingSet] = {}
    for arm, row in zip(arms, comparison.rows, strict=True):
        traces = arm.traces
        if traces is None:
            continue
        name = traces.metadata.name
        if name in found:
            found[name].labels.append(row.label)
            continue
        status = traces.status
        stats = status.stats if status else None
        found[name] = TrainingSet(
            name=name,
            labels=[row.label],
            count=status.count if status else None,
            tokens=stats.tokens.model_dump() if stats and stats.tokens else {},
            stages=dict(stats.stages) if stats else {},
            correct_rate=stats.correct_rate if stats else None,
        )
    return list(found.values())
