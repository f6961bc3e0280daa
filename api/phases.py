"""Condition types, their reasons, phases, and which condition decides the phase: names only, no models.

Types and reasons are constants (as Kueue's workload_types.go keeps them); reasons are grouped under the type
they explain. Kept free of pydantic so that readers of raw objects (`cotctl status`) share this one reading of
conditions with the typed models in conditions.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


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
    CHILD_NAME_TAKEN = "ChildNameTaken"  # a child's name is held by another resource's child (a deleted one's)
    CHILD_REJECTED = "ChildRejected"  # the API server refused a child (quota 403, admission 422): retried
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
    OVERRIDE_NOT_ALLOWED = "OverrideNotAllowed"  # annotations, tolerations, nodeSelector outside the settings
    LOCATION_NOT_ALLOWED = "LocationNotAllowed"  # a file:// outside COTLAB_FILE_ROOT, an output outside its prefix
    NO_SUMMARY = "NoSummary"
    DEADLINE_EXCEEDED = "DeadlineExceeded"


class Phase(StrEnum):
    PENDING = "Pending"
    WAITING = "Waiting"
    RUNNING = "Running"
    SUSPENDED = "Suspended"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


# In order of finality: the first true condition decides the phase.
PHASE_BY_CONDITION = {
    ConditionType.FAILED: Phase.FAILED,
    ConditionType.READY: Phase.SUCCEEDED,
    ConditionType.SUSPENDED: Phase.SUSPENDED,
    ConditionType.RUNNING: Phase.RUNNING,
    ConditionType.WAITING: Phase.WAITING,
}


def deciding_type(conditions: Iterable[tuple[str, str]]) -> ConditionType | None:
    """The type of the condition that decides the phase, from (type, status) pairs; None while Pending."""
    true = {type_ for type_, status in conditions if status == "True"}
    return next((t for t in PHASE_BY_CONDITION if t in true), None)


# A resource whose status has one of these true has finished: its result is recorded once and kept.
FINISHED = (ConditionType.READY, ConditionType.FAILED)


def is_finished(conditions: Iterable[tuple[str, str]]) -> bool:
    """Whether (type, status) pairs say the resource finished (Ready or Failed): nothing is made or re-derived."""
    return any(type_ in FINISHED and status == "True" for type_, status in conditions)
