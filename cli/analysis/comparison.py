"""What `cotctl compare` (and a report) computes: each arm's scores over its seeds, and its corrected differences.

`build_comparison` is the one entry: arms in, a typed `Comparison` out (what `-o json` prints). Cells are the
arms' scores from their EvalRuns' status, averaged over training seeds: the standard error over problems and
seeds comes from the per-sample records when they are readable (`significance.arm_estimate`), otherwise from
the seeds' own standard errors and their spread. Differences from the baseline arm are paired bootstraps over
problems and seeds (`significance`), and the intervals shown together are corrected together (`corrections`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from statistics import fmean, variance

from pydantic import Field

from cotlab.api import EvalRun
from cotlab.api.metrics import parse_metric

from ..terminal.errors import CliError, UsageError
from ..terminal.views import View
from .arms import Arm
from .corrections import CORRECTION_NAMES, Correction, correct
from .evaluations import RunRecords
from .significance import METHOD, Difference, arm_estimate, paired_bootstrap

ONE_SEED = "one training seed: its intervals cover sampling and problem noise, not how much another seed would differ"

RecordReader = Callable[[EvalRun, str], RunRecords]
"""An EvalRun's per-sample correctness on one benchmark (raises CliError when it cannot be read)."""


class Cell(View):
    value: float
    stderr: float | None = None
    best: bool = False


class Delta(View):
    """A row's metric minus the baseline's on one benchmark, with its corrected bootstrap interval (fractions)."""

    value: float | None = None
    low: float | None = None
    high: float | None = None
    level: float | None = Field(default=None, description="The interval's level after the correction.")
    p_value: float | None = None
    significant: bool | None = None
    problems: int | None = None
    seeds: list[int] | None = Field(default=None, description="Training seeds averaged: [baseline, this row].")
    df: float | None = Field(default=None, description="Degrees of freedom of the replicates' Student-t scale.")
    note: str | None = None


class ComparisonRow(View):
    label: str
    evalrun: str = Field(description="The arm's first EvalRun.")
    evalruns: list[str]
    namespace: str
    model: str
    fine_tune_runs: list[str] = Field(default_factory=list)
    trace_dataset: str | None = None
    seeds: int = Field(description="EvalRuns averaged: one per training seed (1 for an untrained model).")
    training_seeds: list[int] = Field(default_factory=list)
    baseline: bool = False
    note: str | None = None
    scores: dict[str, dict[str, Cell]] = Field(default_factory=dict)
    differences: dict[str, Delta] = Field(default_factory=dict)


class Comparison(View):
    """What `cotctl compare -o json` prints."""

    metric: str
    majority: str | None
    baseline: str
    benchmarks: list[str]
    confidence: float
    replicates: int
    method: str = METHOD
    correction: Correction = Correction.holm
    correction_name: str = CORRECTION_NAMES[Correction.holm]
    intervals: int = Field(default=0, description="Differences corrected together.")
    notes: list[str] = Field(default_factory=list)
    rows: list[ComparisonRow]


def _majority(runs: list[EvalRun]) -> str | None:
    """The maj@k the runs report (the first one any of them lists)."""
    for run in runs:
        for metric in run.spec.metrics:
            if parse_metric(metric)[0] == "maj":
                return metric
    return None


def _status_cell(arm: Arm, benchmark: str, metric: str) -> Cell | None:
    """The mean over the arm's seeds; stderr from the seeds' own (problems) plus their spread (seeds)."""
    values = [m.scores[benchmark].metrics[metric] for m in arm.runs if metric in m.scores[benchmark].metrics]
    if len(values) != len(arm.runs):
        return None
    stderrs = [v.stderr for v in values]
    stderr = None
    if all(s is not None for s in stderrs):
        spread = variance([v.value for v in values]) / len(values) if len(values) > 1 else 0.0
        stderr = math.sqrt(fmean(s * s for s in stderrs if s is not None) + spread)
    return Cell(value=fmean(v.value for v in values), stderr=stderr)


def score_table(
    arms: list[Arm], metric: str, majority: str | None
) -> tuple[list[str], list[dict[str, dict[str, Cell]]]]:
    """(benchmarks in first-seen order, per arm: benchmark -> metric -> cell), the best of each column marked."""
    benchmarks: list[str] = []
    for arm in arms:
        for member in arm.runs:
            benchmarks += [b for b in member.scores if b not in benchmarks]
    wanted = [m for m in (metric, majority) if m]
    cells: list[dict[str, dict[str, Cell]]] = []
    for arm in arms:
        row: dict[str, dict[str, Cell]] = {}
        for benchmark in benchmarks:
            if all(benchmark in m.scores for m in arm.runs):
                row[benchmark] = {n: c for n in wanted if (c := _status_cell(arm, benchmark, n)) is not None}
        cells.append(row)
    for benchmark in benchmarks:
        for name in wanted:
            present = [row[benchmark][name] for row in cells if name in row.get(benchmark, {})]
            top = max((c.value for c in present), default=None)
            for cell in present:
                cell.best = len(present) > 1 and cell.value == top
    return benchmarks, cells


def _baseline_index(arms: list[Arm], baseline: str | None) -> int:
    if baseline is None:
        return 0
    matches = [i for i, a in enumerate(arms) if baseline == a.label or baseline in (m.name for m in a.runs)]
    if not matches:
        valid = ", ".join(m.name for a in arms for m in a.runs)
        raise UsageError(f"--baseline: {baseline!r} is none of the compared runs ({valid})")
    return matches[0]


class _Records:
    """Per-sample records read once per (EvalRun, benchmark); a failure is kept and reported once."""

    def __init__(self, read: RecordReader) -> None:
        self.read = read
        self.cache: dict[tuple[str, str], RunRecords | CliError] = {}
        self.failure: CliError | None = None

    def of(self, arm: Arm, benchmark: str) -> list[RunRecords] | None:
        out = []
        for member in arm.runs:
            key = (member.name, benchmark)
            if key not in self.cache:
                try:
                    self.cache[key] = self.read(member.run, benchmark)
                except CliError as err:
                    self.cache[key] = err
            found = self.cache[key]
            if isinstance(found, CliError):
                self.failure = self.failure or found
                return None
            out.append(found)
        return out


def _difference(base: list[RunRecords], other: list[RunRecords], *, replicates: int, seed: int) -> Difference | str:
    """The bootstrap difference of two arms' records on one benchmark, or why there is none."""
    digests = {r.problems_digest for r in base + other if r.problems_digest}
    if len(digests) > 1:
        return "different problems (problemsDigest differs): not comparable"
    try:
        return paired_bootstrap([r.correct for r in base], [r.correct for r in other], replicates=replicates, seed=seed)
    except ValueError as err:
        return str(err)


def _differences(
    arms: list[Arm],
    chosen: int,
    cells: list[dict[str, dict[str, Cell]]],
    benchmarks: list[str],
    records: _Records,
    *,
    replicates: int,
    confidence: float,
    seed: int,
    correction: Correction,
) -> tuple[dict[tuple[int, str], Delta], int]:
    """Each (arm, benchmark)'s delta from the baseline, the intervals corrected together; and how many there are."""
    found: dict[tuple[int, str], Difference] = {}
    deltas: dict[tuple[int, str], Delta] = {}
    for i, arm in enumerate(arms):
        for benchmark in benchmarks if i != chosen else ():
            if benchmark not in cells[i] or benchmark not in cells[chosen]:
                deltas[(i, benchmark)] = Delta(note="not scored by both")
                continue
            base, other = records.of(arms[chosen], benchmark), records.of(arm, benchmark)
            if base is None or other is None:
                deltas[(i, benchmark)] = Delta(note="per-sample records not readable")
                continue
            got = _difference(base, other, replicates=replicates, seed=seed)
            if isinstance(got, str):
                deltas[(i, benchmark)] = Delta(note=got)
            else:
                found[(i, benchmark)] = got
    corrected = correct(list(found.values()), confidence=confidence, method=correction)
    for (key, got), interval in zip(found.items(), corrected, strict=True):
        one_seed = any(a.trained and len(a.runs) == 1 for a in (arms[chosen], arms[key[0]]))
        deltas[key] = Delta(
            value=got.value,
            low=interval.low,
            high=interval.high,
            level=interval.level,
            p_value=got.p_value,
            significant=interval.significant,
            problems=got.problems,
            seeds=list(got.seeds),
            df=None if got.df is None else round(got.df, 2),
            note=ONE_SEED if one_seed else None,
        )
    return deltas, len(found)


def _record_stderrs(arms: list[Arm], cells: list[dict[str, dict[str, Cell]]], metric: str, records: _Records) -> None:
    """Replace the status-based standard errors with the records' (over problems and seeds) where readable."""
    for arm, row in zip(arms, cells, strict=True):
        for benchmark, cell in row.items():
            readable = records.of(arm, benchmark) if metric in cell else None
            if readable is not None:
                with contextlib.suppress(ValueError):  # no problem shared by its seeds: the status-based one stays
                    cell[metric].stderr = arm_estimate([r.correct for r in readable]).stderr


def _row(
    arm: Arm, cells: dict[str, dict[str, Cell]], differences: dict[str, Delta], *, baseline: bool
) -> ComparisonRow:
    return ComparisonRow(
        label=arm.label,
        evalrun=arm.runs[0].name,
        evalruns=[m.name for m in arm.runs],
        namespace=arm.run.metadata.namespace or "default",
        model=arm.runs[0].model,
        fine_tune_runs=[m.fine_tune.metadata.name for m in arm.runs if m.fine_tune],
        trace_dataset=arm.traces.metadata.name if arm.traces else None,
        seeds=len(arm.runs),
        training_seeds=arm.seeds,
        baseline=baseline,
        note=ONE_SEED if arm.trained and len(arm.runs) == 1 else None,
        scores=cells,
        differences=differences,
    )


def build_comparison(
    arms: list[Arm],
    *,
    baseline: str | None,
    metric: str,
    replicates: int,
    confidence: float,
    seed: int,
    read: RecordReader,
    correction: Correction = Correction.holm,
    notes: list[str] | None = None,
) -> Comparison:
    """The whole comparison: score cells, the baseline, and each row's corrected difference per benchmark."""
    majority = _majority([m.run for a in arms for m in a.runs])
    benchmarks, cells = score_table(arms, metric, majority)
    chosen = _baseline_index(arms, baseline)
    records = _Records(read)
    deltas, intervals = _differences(
        arms, chosen, cells, benchmarks, records,
        replicates=replicates, confidence=confidence, seed=seed, correction=correction,
    )  # fmt: skip
    _record_stderrs(arms, cells, metric, records)
    notes = list(notes or [])
    notes += [f"{arm.label}: {ONE_SEED}" for arm in arms if arm.trained and len(arm.runs) == 1]
    if records.failure is not None:
        failure = records.failure
        notes.append(f"no differences: {failure.message}" + (f"; {failure.hint}" if failure.hint else ""))
    rows = [
        _row(arm, cells[i], {b: deltas[(i, b)] for b in benchmarks if (i, b) in deltas}, baseline=i == chosen)
        for i, arm in enumerate(arms)
    ]
    return Comparison(
        metric=metric,
        majority=majority,
        baseline=arms[chosen].label,
        benchmarks=benchmarks,
        confidence=confidence,
        replicates=replicates,
        correction=correction,
        correction_name=CORRECTION_NAMES[correction],
        intervals=intervals,
        notes=notes,
        rows=rows,
    )
