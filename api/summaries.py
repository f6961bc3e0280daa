"""From a stage's summary (the termination message) to the resource's status: one mapping for both sides.

The operator reads the summary from the finished pod, the local runner from the file the stage wrote;
both turn it into status fields and conditions here, so a score table means the same everywhere.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .conditions import ConditionType, Phase, Reason, derive_phase, set_condition
from .evalrun import BenchmarkScore, EvalOutputs, EvalRunStatus
from .finetunerun import FineTuneOutputs, FineTuneRunStatus, Progress
from .models import PinnedInput
from .podcontract import ExitCode
from .resources import FineTuneRun, Resource, TraceDataset
from .tracedataset import Artifact, TraceDatasetStatus, TraceStats

Status = TraceDatasetStatus | FineTuneRunStatus | EvalRunStatus

FAILURE_REASONS = {
    ExitCode.INVALID_SPEC: Reason.INVALID_SPEC,
    ExitCode.INVALID_INPUT: Reason.INVALID_INPUT,
    ExitCode.TRACE_TOO_LONG: Reason.TRACE_TOO_LONG,
}


def empty_status(resource: Resource) -> Status:
    """The resource's status, or a fresh one of the right type."""
    if resource.status is not None:
        return resource.status.model_copy(deep=True)
    if isinstance(resource, TraceDataset):
        return TraceDatasetStatus()
    if isinstance(resource, FineTuneRun):
        return FineTuneRunStatus()
    return EvalRunStatus()


def phase_of(resource: Resource) -> Phase:
    """The resource's phase, derived from its conditions (never from a stored phase field)."""
    return derive_phase(resource.status.conditions) if resource.status is not None else Phase.PENDING


def failure_reason(exit_code: int) -> str:
    """The Failed condition's reason for a stage's exit code."""
    try:
        return FAILURE_REASONS.get(ExitCode(exit_code), Reason.POD_FAILED)
    except ValueError:
        return Reason.POD_FAILED


def succeeded_status(resource: Resource, summary: dict[str, Any], *, now: datetime) -> Status:
    """Status after the stage exited 0 with `summary`: outputs recorded, Ready, not Running."""
    status = empty_status(resource)
    generation = resource.metadata.generation
    status.pinned = [PinnedInput.model_validate(p) for p in summary.get("pinned", [])]
    if isinstance(status, TraceDatasetStatus):
        status.artifact = Artifact.model_validate(summary["artifact"])
        status.count = summary.get("count")
        status.stats = TraceStats.model_validate(summary["stats"]) if "stats" in summary else None
        message = f"{status.count} traces, {status.artifact.digest}"
    elif isinstance(status, FineTuneRunStatus):
        status.outputs = FineTuneOutputs.model_validate(summary.get("outputs", {}))
        if "progress" in summary:
            status.progress = Progress.model_validate(summary["progress"])
        status.completion_time = now
        message = f"model at {status.outputs.model.uri}" if status.outputs.model else "done"
    else:
        status.scores = {k: BenchmarkScore.model_validate(v) for k, v in summary.get("scores", {}).items()}
        status.outputs = EvalOutputs.model_validate(summary.get("outputs", {}))
        status.completion_time = now
        message = f"scored {', '.join(status.scores)}"
        if not status.scores:
            # Too many benchmarks for the 4 KiB termination message: the scores file has them all.
            message = f"scores did not fit the termination message; read them at {status.outputs.scores}"
    conditions, _ = set_condition(
        status.conditions, ConditionType.RUNNING, False, Reason.SUCCEEDED, now=now, generation=generation
    )
    conditions, _ = set_condition(
        conditions, ConditionType.READY, True, Reason.SUCCEEDED, message, now=now, generation=generation
    )
    status.conditions = conditions
    status.phase = derive_phase(conditions)
    status.observed_generation = generation
    return status


def failed_status(resource: Resource, exit_code: int, message: str, *, now: datetime) -> Status:
    """Status after the stage failed: the reason from the exit code, the message from its summary or log."""
    status = empty_status(resource)
    generation = resource.metadata.generation
    conditions, _ = set_condition(
        status.conditions, ConditionType.RUNNING, False, Reason.POD_FAILED, now=now, generation=generation
    )
    conditions, _ = set_condition(
        conditions, ConditionType.FAILED, True, failure_reason(exit_code), message, now=now, generation=generation
    )
    status.conditions = conditions
    status.phase = derive_phase(conditions)
    status.observed_generation = generation
    return status


def with_condition(
    resource: Resource, type_: str, value: bool, reason: str, message: str = "", *, now: datetime
) -> Status:
    """Status with one condition set (Waiting on a dependency, Running) and the phase derived again."""
    status = empty_status(resource)
    status.conditions, _ = set_condition(
        status.conditions, type_, value, reason, message, now=now, generation=resource.metadata.generation
    )
    status.phase = derive_phase(status.conditions)
    return status
