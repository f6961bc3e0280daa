"""Condition types, their reasons, the one condition setter, and phase derived from conditions.

Types and reasons are constants (as Kueue's workload_types.go keeps them); reasons are grouped under
the type they explain. Phase is never stored on its own: `derive_phase` computes it from conditions.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field

from .base import CamelModel

MAX_MESSAGE_LENGTH = 32 * 1024  # the apiserver's limit for metav1.Condition.message


class ConditionType(StrEnum):
    # The resource waits for something outside itself (a TraceDataset, a FineTuneRun, a queue).
    WAITING = "Waiting"
    # Children exist and the work is running.
    RUNNING = "Running"
    # The work is paused by spec.suspend (or by Kueue, which suspends the child Job).
    SUSPENDED = "Suspended"
    # The resource produced its output: a dataset artifact, a model, a score table.
    READY = "Ready"
    # The work ended without output and will not be retried.
    FAILED = "Failed"


class Reason:
    """Reasons, grouped by the condition type they explain."""

    # Waiting
    DATASET_NOT_READY = "DatasetNotReady"
    FINETUNE_NOT_SUCCEEDED = "FineTuneRunNotSucceeded"
    DEPENDENCY_NOT_FOUND = "DependencyNotFound"
    QUEUED = "Queued"
    PREEMPTED = "Preempted"
    KUEUE_NOT_INSTALLED = "KueueNotInstalled"
    # Running
    POD_RUNNING = "PodRunning"
    POD_PENDING = "PodPending"
    JOB_CREATED = "JobCreated"
    RESTARTING = "Restarting"  # a multi-node attempt ended: every rank stops, the next attempt starts them all
    # An ended attempt of a multi-node run (status.endedAttempts[].reason)
    RANK_FAILED = "RankFailed"  # counts against spec.maxRetries
    DISRUPTED = "Disrupted"  # preemption, eviction, node drain: not the run's fault, not counted
    # Suspended
    SUSPENDED_BY_USER = "SuspendedByUser"
    DEACTIVATED_IN_KUEUE = "DeactivatedInKueue"
    RESUMED = "Resumed"
    # Ready
    SUCCEEDED = "Succeeded"
    # Failed
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    INVALID_SPEC = "InvalidSpec"
    INVALID_INPUT = "InvalidInput"
    TRACE_TOO_LONG = "TraceTooLong"
    POD_FAILED = "PodFailed"
    DEPENDENCY_FAILED = "DependencyFailed"
    IMAGE_NOT_ALLOWED = "ImageNotAllowed"
    SERVICE_ACCOUNT_NOT_ALLOWED = "ServiceAccountNotAllowed"
    NO_SUMMARY = "NoSummary"
    DEADLINE_EXCEEDED = "DeadlineExceeded"


class Phase(StrEnum):
    PENDING = "Pending"
    WAITING = "Waiting"
    RUNNING = "Running"
    SUSPENDED = "Suspended"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class Condition(CamelModel):
    """A condition in the Kubernetes (metav1.Condition) shape."""

    type: str = Field(max_length=316)
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(min_length=1, max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    message: str = Field(default="", max_length=MAX_MESSAGE_LENGTH)
    last_transition_time: datetime
    observed_generation: int | None = Field(default=None, ge=0)


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: bool,
    reason: str,
    message: str = "",
    *,
    now: datetime,
    generation: int | None = None,
) -> tuple[list[Condition], bool]:
    """Return the conditions with `type_` set, and whether anything changed.

    The transition time moves only when the status flips, as meta.SetStatusCondition does;
    the message is truncated to the apiserver's limit.
    """
    wire_status: Literal["True", "False"] = "True" if status else "False"
    message = message[:MAX_MESSAGE_LENGTH]
    old = next((c for c in conditions if c.type == type_), None)
    if old is not None and (old.status, old.reason, old.message, old.observed_generation) == (
        wire_status,
        reason,
        message,
        generation,
    ):
        return conditions, False
    new = Condition(
        type=type_,
        status=wire_status,
        reason=reason,
        message=message,
        last_transition_time=old.last_transition_time if old and old.status == wire_status else now,
        observed_generation=generation,
    )
    if old is None:
        return [*conditions, new], True
    return [new if c.type == type_ else c for c in conditions], True


def is_true(conditions: list[Condition], type_: str) -> bool:
    """Whether the condition of `type_` is present with status True."""
    return any(c.type == type_ and c.status == "True" for c in conditions)


_PHASE_BY_CONDITION = (  # in order of finality: the first true condition decides the phase
    (ConditionType.FAILED, Phase.FAILED),
    (ConditionType.READY, Phase.SUCCEEDED),
    (ConditionType.SUSPENDED, Phase.SUSPENDED),
    (ConditionType.RUNNING, Phase.RUNNING),
    (ConditionType.WAITING, Phase.WAITING),
)


def derive_phase(conditions: list[Condition]) -> Phase:
    """The phase a user sees, derived from conditions in order of finality."""
    deciding = phase_condition(conditions)
    return dict(_PHASE_BY_CONDITION)[ConditionType(deciding.type)] if deciding else Phase.PENDING


def phase_condition(conditions: list[Condition]) -> Condition | None:
    """The condition that decides the phase (its reason and message explain it), or None while Pending."""
    for type_, _ in _PHASE_BY_CONDITION:
        found = next((c for c in conditions if c.type == type_ and c.status == "True"), None)
        if found is not None:
            return found
    return None
