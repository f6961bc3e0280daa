"""Arms of a comparison: finished EvalRuns grouped by their row label, each run one training seed of its arm.

An arm is a recipe (a FineTuneRun spec on a dataset), trained once per training seed (`spec.training.seed`) and
each model evaluated by its own EvalRun. `cotctl compare --rows label:cotlab.dev/arm` puts the EvalRuns that share
the label into one arm when they are seeds of one recipe: each evaluates a FineTuneRun, the FineTuneRuns differ in
`training.seed` alone (`cotlab.api.finetunerun.recipe_fields`) and train on the same dataset, the EvalRuns
evaluate the same way (`cotlab.api.evalrun.protocol_fields`), and no seed appears twice. Runs that share a label
without being seeds of one recipe stay apart, each its own row named by its EvalRun, and a note says what
differs: averaging them would mix two recipes into one number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cotlab.api import EvalRun, FineTuneRun, TraceDataset
from cotlab.api.evalrun import BenchmarkScore, protocol_fields
from cotlab.api.finetunerun import recipe_fields
from cotlab.api.models import ModelSource

ROWS = ("run", "model", "traces")
"""--rows values besides label:KEY."""


def model_summary(source: ModelSource) -> str:
    """A model source in one line: hub@revision or its URI (and the GGUF file); what --rows model labels by."""
    where = f"{source.hub}@{source.revision}" if source.hub else str(source.uri)
    return where + (f" ({source.gguf_file})" if source.gguf_file else "")


@dataclass(frozen=True)
class Evaluation:
    """One finished EvalRun, its scores, and the FineTuneRun and TraceDataset behind it, if any."""

    run: EvalRun
    scores: dict[str, BenchmarkScore]
    fine_tune: FineTuneRun | None = None
    traces: TraceDataset | None = None

    @property
    def name(self) -> str:
        return self.run.metadata.name

    @property
    def seed(self) -> int | None:
        """The training seed of the evaluated model; None for a model no FineTuneRun trained."""
        return self.fine_tune.spec.training.seed if self.fine_tune is not None else None

    @property
    def model(self) -> str:
        source = self.run.spec.model
        if source.fine_tune_run_ref is not None:
            base = model_summary(self.fine_tune.spec.base_model) if self.fine_tune else "?"
            return f"{base} + {source.fine_tune_run_ref.name}"
        assert source.source is not None  # the spec's validator requires one of them
        return model_summary(source.source)

    def label(self, rows: str) -> str:
        if rows == "model":
            return self.model
        if rows == "traces":
            return self.traces.metadata.name if self.traces else "(no fine-tune)"
        if rows.startswith("label:"):
            return self.run.metadata.labels.get(rows.removeprefix("label:"), "(unlabelled)")
        return self.name


@dataclass(frozen=True)
class Arm:
    """A row of the comparison: one EvalRun per training seed of one recipe (or a single EvalRun)."""

    label: str
    runs: tuple[Evaluation, ...]

    @property
    def run(self) -> EvalRun:
        """The first EvalRun (its spec stands for all: they share the evaluation protocol)."""
        return self.runs[0].run

    @property
    def traces(self) -> TraceDataset | None:
        return self.runs[0].traces

    @property
    def seeds(self) -> list[int]:
        """The training seeds, in the order of the runs; empty for an untrained model."""
        return [r.seed for r in self.runs if r.seed is not None]

    @property
    def trained(self) -> bool:
        return self.runs[0].fine_tune is not None


def _dataset_identity(member: Evaluation) -> str:
    traces = member.traces
    if traces is not None and traces.status is not None and traces.status.artifact is not None:
        return traces.status.artifact.digest
    return member.fine_tune.spec.dataset_ref.name if member.fine_tune else ""


def _first_difference(a: Any, b: Any, path: str = "spec") -> str:
    """The first path at which two JSON values differ ("spec.training.learningRate")."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{path}.{key}")
    return path


def why_not_seeds(members: Sequence[Evaluation]) -> str | None:
    """Why these EvalRuns are not the training seeds of one recipe, or None when they are."""
    first = members[0]
    untrained = [m.name for m in members if m.fine_tune is None]
    if untrained:
        return f"evalrun/{untrained[0]} evaluates no FineTuneRun, so it has no training seed"
    for other in members[1:]:
        assert first.fine_tune is not None and other.fine_tune is not None
        pair = f"finetunerun/{first.fine_tune.metadata.name} and finetunerun/{other.fine_tune.metadata.name}"
        mine, theirs = recipe_fields(first.fine_tune.spec), recipe_fields(other.fine_tune.spec)
        if mine != theirs:
            return f"{pair} differ in {_first_difference(mine, theirs)}"
        if _dataset_identity(first) != _dataset_identity(other):
            return f"{pair} train on different datasets"
        mine, theirs = protocol_fields(first.run.spec), protocol_fields(other.run.spec)
        if mine != theirs:
            return f"evalrun/{first.name} and evalrun/{other.name} differ in {_first_difference(mine, theirs)}"
    seeds = [m.seed for m in members]
    repeated = next((s for s in seeds if seeds.count(s) > 1), None)
    if repeated is not None:
        names = ", ".join(f"evalrun/{m.name}" for m in members if m.seed == repeated)
        return f"{names} evaluate the same training seed {repeated}"
    return None


def group_arms(members: Sequence[Evaluation], rows: str) -> tuple[list[Arm], list[str]]:
    """The arms (in first-seen order) and notes on runs that share a label but could not be grouped."""
    labels: dict[str, list[Evaluation]] = {}
    for member in members:
        key = member.name if rows == "run" else member.label(rows)
        labels.setdefault(key, []).append(member)
    arms: list[Arm] = []
    notes: list[str] = []
    for label, group in labels.items():
        reason = why_not_seeds(group) if len(group) > 1 else None
        if reason is None:
            arms.append(Arm(label, tuple(group)))
            continue
        notes.append(f"{label}: not averaged as training seeds, {reason}; each run is its own row")
        arms += [Arm(f"{label} ({m.name})", (m,)) for m in group]
    return arms, notes
