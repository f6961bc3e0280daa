"""From what the cluster shows to the resource's status: pure functions of the resource, its children and `now`.

Until a resource finishes, its status is re-derived on every reconcile from the Job, its pods (exit codes,
termination messages) and the newest progress marker, so an operator restarted at any moment converges to the same
status. Once it is Ready or Failed the controller no longer calls these: the result was recorded once. A finished
stage's summary is mapped by `cotlab.api.summaries`, the code the local runner uses too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from cotlab.api import Condition, ConditionType, EvalRun, FineTuneRun, Reason, Resource, derive_phase, set_condition
from cotlab.api.children import QUEUE_NAME_LABEL
from cotlab.api.dependencies import Blocked
from cotlab.api.evalrun import EvalProgress, EvalRunStatus
from cotlab.api.finetunerun import EndedAttempt, FineTuneRunStatus, Progress
from cotlab.api.podcontract import PERMANENT_EXIT_CODES, STAGE_BY_KIND, decode_summary
from cotlab.api.summaries import Status, empty_status, failure_reason, succeeded_status
from cotlab.api.workload import QueueStatus

from .builders import nodes_of
from .policy import Refusal

_KEPT_ATTEMPTS = 100  # status.endedAttempts keeps the newest (disruptions restart without limit)
# How long after its Job finished a pod's final status may still be on its way (another watch stream, a watch
# resuming after an outage). A finished result is recorded once, so it is decided only on the pods' own word, or,
# when they never show it (deleted first), this long after the Job said it finished, with the pod watch up.
POD_STATUS_GRACE_SECONDS = 60


@dataclass(frozen=True)
class Observed:
    """What a reconcile saw: the Job (None until made), its pods, the newest progress marker, and why no Job."""

    job: dict[str, Any] | None = None
    pods: Sequence[dict[str, Any]] = ()
    marker: dict[str, Any] | None = None
    blocked: Blocked | None = None
    refusal: Refusal | None = None
    workload: dict[str, Any] | None = None  # Kueue's Workload of a queued Job
    retry: bool = False  # the reconcile could not finish (a child was rejected): try again after a backoff
    pods_current: bool = True  # the pod watch is up: `pods` are what the API server has, give or take an event


def _job_condition(job: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == type_ and condition.get("status") == "True":
            return dict(condition)
    return None


def _by_age(pods: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(pods, key=lambda p: (p["metadata"].get("creationTimestamp") or "", p["metadata"]["name"]))


def _terminated(pod: dict[str, Any], container: str) -> dict[str, Any] | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == container:
            terminated = (status.get("state") or {}).get("terminated")
            return dict(terminated) if terminated else None
    return None


def _timestamp(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def attempts_of(job: dict[str, Any]) -> int:
    """Attempts the Job has made: one per failed pod (disruptions excluded by the podFailurePolicy), plus the
    live or finished one; the pods of a multi-node attempt (an Indexed Job) count once together."""
    status = job.get("status") or {}
    live = int(status.get("succeeded") or 0) + int(status.get("active") or 0)
    return int(status.get("failed") or 0) + (1 if live else 0)


def _pending_message(pods: Sequence[dict[str, Any]]) -> str:
    """Why the newest pod has not started: the scheduler's or the kubelet's words."""
    if not pods:
        return "the Job has not created its pod yet"
    pod = _by_age(pods)[-1]
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return (
                f"pod {pod['metadata']['name']} is not scheduled: {condition.get('message') or condition.get('reason')}"
            )
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (status.get("state") or {}).get("waiting")
        if waiting:
            detail = waiting.get("message") or waiting.get("reason") or "waiting"
            return f"pod {pod['metadata']['name']} is starting: {detail}"
    return f"pod {pod['metadata']['name']} is pending"


# Signals that end a rank on its own account: the kernel's (the OOM killer, `kill -9`) or a native crash's. A rank
# whose peer died fails differently: with a collective error (gloo: "connection closed by peer"), or stopped by
# the Job controller (SIGTERM) or NCCL's watchdog (SIGABRT). The launcher names the signal in the failure summary.
_SIGNALS_OF_A_CAUSE = frozenset({"SIGKILL", "SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE"})


def _first_to_fail(pods: Sequence[dict[str, Any]], stage: str) -> list[dict[str, Any]]:
    """The pods of one multi-node attempt, the likeliest cause first: not deleted (the Job controller deletes the
    others after it) before deleted, then killed by a signal of its own (see above), then earliest end.

    The end time alone cannot decide: it has a resolution of one second, and a rank whose peer was SIGKILLed
    fails within milliseconds (checked in the cluster test, where rank 0's gloo error tied rank 1's kill)."""

    def key(pod: dict[str, Any]) -> tuple[bool, bool, str, str]:
        terminated = _terminated(pod, stage) or {}
        killed = (decode_summary(terminated.get("message")) or {}).get("signal") in _SIGNALS_OF_A_CAUSE
        finished = str(terminated.get("finishedAt") or "~")  # "~": not ended sorts last
        return (bool(pod["metadata"].get("deletionTimestamp")), not killed, finished, pod["metadata"]["name"])

    return sorted(pods, key=key)


def _failure(
    resource: Resource, job: dict[str, Any], pods: Sequence[dict[str, Any]], *, attempts: int | None = None
) -> tuple[str, str]:
    """(reason, message) of a failed Job: the last failed pod's exit code and what it said before it died."""
    stage = STAGE_BY_KIND[resource.kind]
    job_failed = _job_condition(job, "Failed") or {}
    attempts = attempts_of(job) if attempts is None else attempts
    for pod in reversed(_by_age(pods)) if nodes_of(resource) == 1 else _first_to_fail(pods, stage):
        terminated = _terminated(pod, stage)
        if terminated is None or int(terminated.get("exitCode", 0)) == 0:
            continue
        code = int(terminated["exitCode"])
        raw = str(terminated.get("message") or "").strip()
        summary = decode_summary(raw)
        said = str(summary.get("error")) if summary and summary.get("error") else raw or "no termination message"
        message = f"{stage} exited with code {code} on attempt {attempts} (pod {pod['metadata']['name']}): {said}"
        if code in PERMANENT_EXIT_CODES:
            return failure_reason(code), message
        if job_failed.get("reason") == "BackoffLimitExceeded":
            return Reason.BACKOFF_LIMIT_EXCEEDED, message
        return failure_reason(code), message
    reason = Reason.DEADLINE_EXCEEDED if job_failed.get("reason") == "DeadlineExceeded" else Reason.POD_FAILED
    return reason, f"Job failed ({job_failed.get('reason')}): {job_failed.get('message') or 'no message'}"


def _disrupted(pods: Sequence[dict[str, Any]]) -> bool:
    return any(
        c.get("type") == "DisruptionTarget" and c.get("status") == "True"
        for pod in pods
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def ended_attempt(
    resource: FineTuneRun, job: dict[str, Any], pods: Sequence[dict[str, Any]], status: FineTuneRunStatus, now: datetime
) -> EndedAttempt | None:
    """The record of a failed multi-node attempt that the next attempt will restart, or None when the run fails:
    a permanent exit code (the spec or input can never work), a deadline, or spec.maxRetries failed attempts.

    A disruption (the pod was preempted, evicted or drained: DisruptionTarget) restarts without counting, as
    JobSet's `RestartJobSetAndIgnoreMaxRestarts` does for Jobs failed by their podFailurePolicy.
    """
    stage = STAGE_BY_KIND[resource.kind]
    codes = {int((_terminated(p, stage) or {}).get("exitCode", 0)) for p in pods}
    if codes & {int(c) for c in PERMANENT_EXIT_CODES}:
        return None
    if (_job_condition(job, "Failed") or {}).get("reason") == "DeadlineExceeded":
        return None
    attempt = status.restarts + 1
    _, message = _failure(resource, job, pods, attempts=attempt)
    if _disrupted(pods):
        reason = Reason.DISRUPTED
    elif failed_attempts(status) >= resource.spec.max_retries:
        return None
    else:
        reason = Reason.RANK_FAILED
    last_step = status.progress.step if status.progress is not None else None
    return EndedAttempt(attempt=attempt, reason=reason, message=message[:4096], last_step=last_step, ended_at=now)


def failed_attempts(status: FineTuneRunStatus) -> int:
    """Attempts ended by a failed rank, all of them: endedAttempts keeps only the newest (disruptions restart
    without limit), so the count lives in its own field; a status from before that field counts its list."""
    return max(status.failed_attempts, sum(1 for a in status.ended_attempts if a.reason == Reason.RANK_FAILED))


def _restarting(conditions: _Conditions, status: FineTuneRunStatus) -> None:
    """Running, between two attempts of a multi-node run: the next attempt's Job is made on the next reconcile."""
    message = f"restarting every rank from the newest checkpoint as attempt {status.restarts + 1}"
    if status.ended_attempts:
        last = status.ended_attempts[-1]
        message = f"attempt {last.attempt} ended ({last.reason}): {last.message}; {message}"
    conditions.put(ConditionType.WAITING, False, Reason.RESTARTING)
    conditions.put(ConditionType.RUNNING, True, Reason.RESTARTING, message)


def _pods_show_the_end(resource: Resource, observed: Observed, finished: dict[str, Any], *, now: datetime) -> bool:
    """Whether the pods in view show how the finished Job ended: for a complete Job, its rank-0 pod exited 0; for
    a failed one, a pod exited non-zero. Otherwise only once the Job has been finished POD_STATUS_GRACE_SECONDS
    (by its condition's transition time) with the pod watch up: the pods are gone, not late."""
    stage = STAGE_BY_KIND[resource.kind]
    codes = [int(t.get("exitCode", 0)) for t in (_terminated(p, stage) for p in observed.pods) if t is not None]
    if finished.get("type") == "Complete":
        ranks0 = [_terminated(p, stage) for p in observed.pods if _completion_index(p) == "0"]
        if any(t is not None and int(t.get("exitCode", 1)) == 0 for t in ranks0):
            return True
    elif any(code != 0 for code in codes):
        return True
    if not observed.pods_current:
        return False
    since = _timestamp(finished.get("lastTransitionTime"))
    return since is None or (now - since).total_seconds() >= POD_STATUS_GRACE_SECONDS


def _completion_index(pod: dict[str, Any]) -> str:
    return str((pod["metadata"].get("annotations") or {}).get("batch.kubernetes.io/job-completion-index", "0"))


def _summary(resource: Resource, pods: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    stage = STAGE_BY_KIND[resource.kind]
    # Of several nodes only node rank 0 (completion index 0) writes the summary; the others end with none.
    for pod in reversed(_by_age([p for p in pods if _completion_index(p) == "0"])):
        terminated = _terminated(pod, stage)
        if terminated is not None and int(terminated.get("exitCode", 1)) == 0:
            return decode_summary(terminated.get("message"))
    return None


def _with_progress(status: Status, marker: dict[str, Any] | None) -> None:
    if marker is None:
        return
    if isinstance(status, FineTuneRunStatus) and "step" in marker:
        fields = {k: v for k, v in marker.items() if k in Progress.model_fields or k in _aliases(Progress)}
        with contextlib.suppress(ValidationError):  # a marker from another pod version: keep the last good one
            status.progress = Progress.model_validate(fields)
    elif isinstance(status, EvalRunStatus) and "done" in marker:
        total = marker.get("total")
        done = int(marker.get("done") or 0)
        with contextlib.suppress(ValidationError):  # a marker this version cannot read never freezes status
            status.progress = EvalProgress(
                benchmark=marker.get("benchmark"),
                done=done,
                total=total,
                percent=round(100.0 * done / total, 2) if isinstance(total, int) and total > 0 else None,
            )


def _aliases(model: type[Progress]) -> set[str]:
    return {f.alias for f in model.model_fields.values() if f.alias}


class _Conditions:
    """Sets conditions on one status at one time and generation (the reducer's only way to write them)."""

    def __init__(self, status: Status, *, now: datetime, generation: int | None) -> None:
        self.status, self.now, self.generation = status, now, generation

    def put(self, type_: str, value: bool, reason: str, message: str = "") -> None:
        self.status.conditions, _ = set_condition(
            self.status.conditions, type_, value, reason, message, now=self.now, generation=self.generation
        )


def reduce_status(resource: Resource, observed: Observed, *, now: datetime) -> Status:
    """The resource's status given what was observed; transition times move only when a condition flips."""
    generation = resource.metadata.generation
    conditions = _Conditions(empty_status(resource), now=now, generation=generation)
    job = observed.job
    if observed.refusal is not None:
        conditions.put(ConditionType.FAILED, True, observed.refusal.reason, observed.refusal.message)
    elif job is None and observed.blocked is not None:
        blocked = observed.blocked
        conditions.put(ConditionType.WAITING, not blocked.failed, blocked.reason, blocked.message)
        if blocked.failed:
            conditions.put(ConditionType.FAILED, True, blocked.reason, blocked.message)
    elif job is not None:
        _reduce_job(resource, conditions, job, observed)
    status = conditions.status
    status.phase = derive_phase(status.conditions)
    status.observed_generation = generation
    return status


def _reduce_job(resource: Resource, conditions: _Conditions, job: dict[str, Any], observed: Observed) -> None:
    status = conditions.status
    name = job["metadata"]["name"]
    job_status = job.get("status") or {}
    if isinstance(status, FineTuneRunStatus | EvalRunStatus):
        status.attempts = attempts_of(job)
        status.start_time = _timestamp(job_status.get("startTime")) or status.start_time
    # A multi-node run: one Job per attempt, whose pods together are one attempt; the operator restarts it.
    restartable = status if nodes_of(resource) > 1 and isinstance(status, FineTuneRunStatus) else None
    if restartable is not None:
        restartable.attempts = restartable.restarts + 1
    complete, failed = _job_condition(job, "Complete"), _job_condition(job, "Failed")
    if (complete or failed) and not _pods_show_the_end(
        resource, observed, complete or failed or {}, now=conditions.now
    ):
        return  # Running until the pods' final statuses are in view: what they say is recorded for good
    if complete is not None:
        summary = _summary(resource, observed.pods)
        if summary is None:
            conditions.put(ConditionType.RUNNING, False, Reason.NO_SUMMARY)
            message = f"Job {name} completed, but its pod left no summary in its termination message"
            conditions.put(ConditionType.FAILED, True, Reason.NO_SUMMARY, message)
            return
        finished = succeeded_status(resource.model_copy(update={"status": status}), summary, now=conditions.now)
        if isinstance(finished, FineTuneRunStatus | EvalRunStatus):
            finished.completion_time = _timestamp(job_status.get("completionTime")) or finished.completion_time
        conditions.status = finished
        conditions.put(ConditionType.WAITING, False, Reason.SUCCEEDED)
        return
    if failed is not None:
        if restartable is not None and isinstance(resource, FineTuneRun):
            ended = ended_attempt(resource, job, observed.pods, restartable, conditions.now)
            if ended is not None:
                if ended.reason == Reason.RANK_FAILED:
                    restartable.failed_attempts = failed_attempts(restartable) + 1
                restartable.ended_attempts = [*restartable.ended_attempts, ended][-_KEPT_ATTEMPTS:]
                restartable.restarts += 1
                restartable.attempts = restartable.restarts + 1
                _restarting(conditions, restartable)
                return
        attempts = restartable.attempts if restartable is not None else None
        reason, message = _failure(resource, job, observed.pods, attempts=attempts)
        conditions.put(ConditionType.RUNNING, False, reason)
        conditions.put(ConditionType.FAILED, True, reason, message)
        return
    queue = (job["metadata"].get("labels") or {}).get(QUEUE_NAME_LABEL)
    if queue:
        status.queue = queue_status(queue, observed.workload)
    user_suspended = isinstance(resource, FineTuneRun | EvalRun) and resource.spec.suspend
    if (job.get("spec") or {}).get("suspend"):
        if user_suspended:
            reason = Reason.DEACTIVATED_IN_KUEUE if queue else Reason.SUSPENDED_BY_USER
            where = f"Job {name} is suspended"
            if queue:  # the operator deactivates the Workload once Kueue has made it, and says which it is
                inactive = observed.workload is not None and not (observed.workload.get("spec") or {}).get("active")
                where = "its Kueue Workload is deactivated" if inactive else "its Kueue Workload is being deactivated"
            conditions.put(ConditionType.RUNNING, False, reason)
            conditions.put(ConditionType.SUSPENDED, True, reason, f"spec.suspend is true: {where}")
        elif queue:
            conditions.put(ConditionType.RUNNING, False, Reason.QUEUED)
            reason, message = _queued(name, queue, observed.workload)
            conditions.put(ConditionType.WAITING, True, reason, message)
        return
    if any(c.type == ConditionType.SUSPENDED for c in status.conditions):
        conditions.put(ConditionType.SUSPENDED, False, Reason.RESUMED)
    phases = [(p.get("status") or {}).get("phase") for p in observed.pods]
    if not phases or ("Pending" in phases and "Running" not in phases):
        conditions.put(ConditionType.RUNNING, False, Reason.POD_PENDING)
        conditions.put(ConditionType.WAITING, True, Reason.POD_PENDING, _pending_message(observed.pods))
        return
    # Running, or just finished while the Job controller has not yet marked the Job complete or failed.
    pod = _by_age(observed.pods)[-1]["metadata"]["name"]
    conditions.put(ConditionType.WAITING, False, Reason.POD_RUNNING)
    attempts = status.attempts if isinstance(status, FineTuneRunStatus | EvalRunStatus) else attempts_of(job)
    message = f"pod {pod} is running (attempt {attempts})"
    if status.queue is not None and status.queue.cluster_queue:
        message += f", admitted by ClusterQueue {status.queue.cluster_queue}"
    conditions.put(ConditionType.RUNNING, True, Reason.POD_RUNNING, message)
    _with_progress(status, observed.marker)


def reduce_invalid(current: dict[str, Any], generation: int | None, message: str, *, now: datetime) -> dict[str, Any]:
    """Status of a resource whose stored spec does not parse (e.g. written under an older CRD): Failed, saying why.

    Everything else in status is kept as it is, whether this version can read it or not (a newer operator's
    fields, an artifact recorded before): only the Failed condition, the phase and observedGeneration change.
    """
    conditions = [c for c in (_parsed_condition(raw) for raw in current.get("conditions") or []) if c is not None]
    conditions, _ = set_condition(
        conditions, ConditionType.FAILED, True, Reason.INVALID_SPEC, message, now=now, generation=generation
    )
    return {
        **current,
        "conditions": [c.to_wire() for c in conditions],
        "phase": str(derive_phase(conditions)),
        "observedGeneration": generation,
    }


def _parsed_condition(raw: Any) -> Condition | None:
    try:
        return Condition.model_validate(raw)
    except ValidationError:
        return None


def queue_status(local_queue: str, workload: dict[str, Any] | None) -> QueueStatus:
    """Where Kueue admitted the Job (ClusterQueue, flavor per resource) and how often it evicted it."""
    status = (workload or {}).get("status") or {}
    admission = status.get("admission") or {}
    flavors: dict[str, str] = {}
    for assignment in admission.get("podSetAssignments") or []:
        flavors.update(assignment.get("flavors") or {})
    evictions = sum(int(e.get("count") or 0) for e in (status.get("schedulingStats") or {}).get("evictions") or [])
    return QueueStatus(
        local_queue=local_queue, cluster_queue=admission.get("clusterQueue"), flavors=flavors, evictions=evictions
    )


def _workload_condition(workload: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    for condition in ((workload or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") == type_:
            return dict(condition)
    return None


def _queued(job: str, queue: str, workload: dict[str, Any] | None) -> tuple[str, str]:
    """(reason, message) of a suspended queued Job: evicted (shown as such, never as a failure) or waiting for quota.

    The message is Kueue's own (the Workload's QuotaReserved or Evicted condition).
    """
    if workload is None:
        return Reason.QUEUED, f"Job {job} waits for Kueue to make its Workload (LocalQueue {queue})"
    waiting = (_workload_condition(workload, "QuotaReserved") or {}).get("message") or "waiting for quota"
    evicted = _workload_condition(workload, "Evicted")
    if evicted is not None and evicted.get("status") == "True":
        return Reason.PREEMPTED, f"evicted by Kueue ({evicted.get('reason')}): {evicted.get('message') or ''}"
    evictions = queue_status(queue, workload).evictions
    if evictions:
        return Reason.PREEMPTED, f"evicted {evictions} time(s), requeued in LocalQueue {queue}: {waiting}"
    return Reason.QUEUED, f"waiting in LocalQueue {queue}: {waiting}"
