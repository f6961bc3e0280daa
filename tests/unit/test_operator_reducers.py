"""From children to status: each case is a real resource, the Job and pods as the API server returns them, and `now`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from cotlab.api import FineTuneRunStatus, Reason, Resource
from cotlab.api.dependencies import Blocked
from cotlab.api.phases import is_finished
from cotlab.api.summaries import Status
from cotlab.api.validation import parse_resource
from cotlab.operator.policy import Refusal
from cotlab.operator.reducers import Observed, reduce_invalid, reduce_status
from tests.unit.test_operator_builders import example

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
EARLIER = "2026-12-01T11:00:00Z"
DIGEST = "sha256:" + "cd" * 32


def make_job(name: str = "quickstart-lora-finetune", *, conditions: tuple[str, ...] = (), suspend: bool = False,
             queue: str | None = None, active: int = 0, failed: int = 0, succeeded: int = 0,
             reason: str = "", message: str = "") -> dict[str, Any]:  # fmt: skip
    labels = {"kueue.x-k8s.io/queue-name": queue} if queue else {}
    status: dict[str, Any] = {"startTime": EARLIER, "active": active, "failed": failed, "succeeded": succeeded}
    status["conditions"] = [{"type": t, "status": "True", "reason": reason, "message": message} for t in conditions]
    if "Complete" in conditions:
        status["completionTime"] = "2026-12-01T11:30:00Z"
    return {"metadata": {"name": name, "namespace": "team-a", "labels": labels}, "spec": {"suspend": suspend},
            "status": status}  # fmt: skip


def make_pod(name: str, phase: str, *, container: str = "finetune", exit_code: int | None = None,
             message: str = "", created: str = EARLIER, unschedulable: str = "") -> dict[str, Any]:  # fmt: skip
    state: dict[str, Any] = {"running": {"startedAt": created}}
    if exit_code is not None:
        state = {"terminated": {"exitCode": exit_code, "message": message}}
    conditions = [{"type": "PodScheduled", "status": "False", "message": unschedulable}] if unschedulable else []
    return {
        "metadata": {"name": name, "namespace": "team-a", "creationTimestamp": created},
        "status": {"phase": phase, "conditions": conditions,
                   "containerStatuses": [{"name": container, "state": state}] if phase != "Pending" else []},
    }  # fmt: skip


def summary(**body: Any) -> str:
    return json.dumps(body)


def conditions_of(status: Status) -> dict[str, tuple[str, str, str]]:
    return {c.type: (c.status, c.reason, c.message) for c in status.conditions}


WAITING_WORKLOAD = {"status": {"conditions": [{
    "type": "QuotaReserved", "status": "False", "reason": "Pending",
    "message": "couldn't assign flavors to pod set main: insufficient unused quota for nvidia.com/gpu in flavor "
               "default, 8 more needed"}]}}  # fmt: skip
EVICTED_WORKLOAD = {"status": {
    "conditions": [{"type": "Evicted", "status": "True", "reason": "Preempted",
                    "message": "Preempted to accommodate a higher priority"}],
    "schedulingStats": {"evictions": [{"reason": "Preempted", "underlyingCause": "", "count": 1}]}}}  # fmt: skip
FT_SUMMARY = summary(stage="finetune", outputs={"model": {"uri": "pvc://a/model", "digest": DIGEST}},
                     progress={"step": 15, "totalSteps": 15, "loss": 0.5, "percent": 100.0})  # fmt: skip
MARKER = {"step": 3, "totalSteps": 15, "epoch": 0.6, "loss": 1.25, "tokensPerSecond": 900.0, "percent": 20.0,
          "etaSeconds": 40.0}  # fmt: skip

CASES: list[tuple[str, Observed, str, dict[str, tuple[str, str, str]]]] = [
    (
        "waits-for-its-dataset",
        Observed(blocked=Blocked(Reason.DATASET_NOT_READY, "waiting for TraceDataset/x to be Ready (it is Running)")),
        "Waiting",
        {"Waiting": ("True", "DatasetNotReady", "waiting for TraceDataset/x to be Ready (it is Running)")},
    ),
    (
        "a-failed-dependency-fails-it",
        Observed(blocked=Blocked(Reason.DEPENDENCY_FAILED, "TraceDataset/x failed")),
        "Failed",
        {
            "Waiting": ("False", "DependencyFailed", "TraceDataset/x failed"),
            "Failed": ("True", "DependencyFailed", "TraceDataset/x failed"),
        },
    ),  # fmt: skip
    (
        "refused",
        Observed(refusal=Refusal(Reason.IMAGE_NOT_ALLOWED, "spec.image 'x' is not allowed")),
        "Failed",
        {"Failed": ("True", "ImageNotAllowed", "spec.image 'x' is not allowed")},
    ),
    (
        "pod-not-schedulable",
        Observed(job=make_job(active=1), pods=[make_pod("p1", "Pending", unschedulable="0/2 nodes: 8 GPUs")]),
        "Waiting",
        {
            "Running": ("False", "PodPending", ""),
            "Waiting": ("True", "PodPending", "pod p1 is not scheduled: 0/2 nodes: 8 GPUs"),
        },
    ),  # fmt: skip
    (
        "running-with-progress",
        Observed(job=make_job(active=1), pods=[make_pod("p1", "Running")], marker=MARKER),
        "Running",
        {"Waiting": ("False", "PodRunning", ""), "Running": ("True", "PodRunning", "pod p1 is running (attempt 1)")},
    ),
    (
        "retry-running-after-a-failure",
        Observed(
            job=make_job(active=1, failed=1),
            pods=[make_pod("p1", "Failed", exit_code=1), make_pod("p2", "Running", created="2026-12-01T11:10:00Z")],
        ),
        "Running",
        {"Waiting": ("False", "PodRunning", ""), "Running": ("True", "PodRunning", "pod p2 is running (attempt 2)")},
    ),  # fmt: skip
    (
        "succeeded",
        Observed(
            job=make_job(conditions=("Complete",), succeeded=1),
            pods=[make_pod("p1", "Succeeded", exit_code=0, message=FT_SUMMARY)],
        ),
        "Succeeded",
        {
            "Running": ("False", "Succeeded", ""),
            "Ready": ("True", "Succeeded", "model at pvc://a/model"),
            "Waiting": ("False", "Succeeded", ""),
        },
    ),  # fmt: skip
    (
        "complete-without-a-summary",
        Observed(job=make_job(conditions=("Complete",), succeeded=1), pods=[make_pod("p1", "Succeeded", exit_code=0)]),
        "Failed",
        {
            "Running": ("False", "NoSummary", ""),
            "Failed": (
                "True",
                "NoSummary",
                "Job quickstart-lora-finetune completed, but its pod left no summary in its termination message",
            ),
        },
    ),  # fmt: skip
    (
        "permanent-exit-code",
        Observed(
            job=make_job(conditions=("Failed",), failed=1, reason="PodFailurePolicy"),
            pods=[
                make_pod(
                    "p1",
                    "Failed",
                    exit_code=4,
                    message=summary(stage="finetune", error="trace 3 has 40000 tokens", exitCode=4),
                )
            ],
        ),
        "Failed",
        {
            "Running": ("False", "TraceTooLong", ""),
            "Failed": (
                "True",
                "TraceTooLong",
                "finetune exited with code 4 on attempt 1 (pod p1): trace 3 has 40000 tokens",
            ),
        },
    ),  # fmt: skip
    (
        "retries-exhausted-with-the-log-tail",
        Observed(
            job=make_job(conditions=("Failed",), failed=4, reason="BackoffLimitExceeded"),
            pods=[make_pod("p4", "Failed", exit_code=137, message="Killed\nCUDA out of memory")],
        ),
        "Failed",
        {
            "Running": ("False", "BackoffLimitExceeded", ""),
            "Failed": (
                "True",
                "BackoffLimitExceeded",
                "finetune exited with code 137 on attempt 4 (pod p4): Killed\nCUDA out of memory",
            ),
        },
    ),  # fmt: skip
    (
        "suspended-by-the-user",
        Observed(job=make_job(suspend=True)),
        "Suspended",
        {
            "Running": ("False", "SuspendedByUser", ""),
            "Suspended": ("True", "SuspendedByUser", "spec.suspend is true: Job quickstart-lora-finetune is suspended"),
        },
    ),  # fmt: skip
    (
        "queued-before-kueue-made-its-workload",
        Observed(job=make_job(suspend=True, queue="gpus")),
        "Waiting",
        {
            "Running": ("False", "Queued", ""),
            "Waiting": (
                "True",
                "Queued",
                "Job quickstart-lora-finetune waits for Kueue to make its Workload (LocalQueue gpus)",
            ),
        },
    ),  # fmt: skip
    (
        "waiting-for-quota-in-kueues-words",
        Observed(job=make_job(suspend=True, queue="gpus"), workload=WAITING_WORKLOAD),
        "Waiting",
        {
            "Running": ("False", "Queued", ""),
            "Waiting": (
                "True",
                "Queued",
                "waiting in LocalQueue gpus: couldn't assign flavors to pod set main: "
                "insufficient unused quota for nvidia.com/gpu in flavor default, 8 more needed",
            ),
        },
    ),  # fmt: skip
    (
        "evicted-is-not-failed",
        Observed(job=make_job(suspend=True, queue="gpus", failed=0), workload=EVICTED_WORKLOAD),
        "Waiting",
        {
            "Running": ("False", "Queued", ""),
            "Waiting": (
                "True",
                "Preempted",
                "evicted by Kueue (Preempted): Preempted to accommodate a higher priority",
            ),
        },
    ),  # fmt: skip
]


@pytest.mark.parametrize(("observed", "phase", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_reduce_finetune_status(observed: Observed, phase: str, want: dict[str, tuple[str, str, str]]) -> None:
    suspend = bool(observed.job and observed.job["spec"]["suspend"] and not observed.job["metadata"]["labels"])
    run = example("quickstart-lora", suspend=suspend)
    status = reduce_status(run, observed, now=NOW)
    assert status.phase == phase
    assert conditions_of(status) == want
    assert status.observed_generation == 1
    assert all(c.observed_generation == 1 and c.last_transition_time == NOW for c in status.conditions)


def test_queue_status_mirrors_the_workload() -> None:
    admitted = {"status": {
        "admission": {"clusterQueue": "team-gpus",
                      "podSetAssignments": [{"name": "main", "flavors": {"nvidia.com/gpu": "h200", "cpu": "default"}}]},
        "schedulingStats": {"evictions": [{"reason": "Preempted", "underlyingCause": "", "count": 2},
                                          {"reason": "Deactivated", "underlyingCause": "", "count": 1}]}}}  # fmt: skip
    run = example("quickstart-lora")
    status = reduce_status(run, Observed(job=make_job(queue="gpus", active=1), pods=[make_pod("p", "Running")],
                                         workload=admitted), now=NOW)  # fmt: skip
    assert status.model_dump(mode="json", by_alias=True)["queue"] == {
        "localQueue": "gpus", "clusterQueue": "team-gpus", "flavors": {"nvidia.com/gpu": "h200", "cpu": "default"},
        "evictions": 3,
    }  # fmt: skip
    assert conditions_of(status)["Running"] == (
        "True",
        "PodRunning",
        "pod p is running (attempt 1), admitted by ClusterQueue team-gpus",
    )


def test_progress_attempts_and_times_come_from_the_children() -> None:
    run = example("quickstart-lora")
    status = reduce_status(
        run, Observed(job=make_job(active=1), pods=[make_pod("p", "Running")], marker=MARKER), now=NOW
    )
    fields = {"progress", "attempts", "start_time"}
    assert status.model_dump(mode="json", by_alias=True, exclude_none=True, include=fields) == {
        "progress": MARKER, "attempts": 1, "startTime": EARLIER,
    }  # fmt: skip
    done = reduce_status(
        run,
        Observed(job=make_job(conditions=("Complete",), succeeded=1),
                 pods=[make_pod("p", "Succeeded", exit_code=0, message=FT_SUMMARY)]),
        now=NOW,
    )  # fmt: skip
    assert done.model_dump(mode="json", by_alias=True, exclude_none=True, include={"outputs", "completion_time"}) == {
        "outputs": {"model": {"uri": "pvc://a/model", "digest": DIGEST}}, "completionTime": "2026-12-01T11:30:00Z",
    }  # fmt: skip


def test_eval_progress_from_the_marker() -> None:
    run = example("quickstart-after")
    job = make_job("quickstart-after-evaluate", active=1)
    pod = make_pod("p", "Running", container="evaluate")
    status = reduce_status(
        run, Observed(job=job, pods=[pod], marker={"benchmark": "gsm8k", "done": 10, "total": 40}), now=NOW
    )
    assert status.model_dump(mode="json", by_alias=True, exclude_none=True)["progress"] == {
        "benchmark": "gsm8k", "done": 10, "total": 40, "percent": 25.0,
    }  # fmt: skip


def test_transition_times_move_only_when_a_condition_flips() -> None:
    run: Resource = example("quickstart-lora")
    running = Observed(job=make_job(active=1), pods=[make_pod("p", "Running")], marker=MARKER)
    run.status = reduce_status(run, running, now=NOW)  # type: ignore[assignment]
    later = datetime(2026, 12, 1, 13, 0, tzinfo=UTC)
    again = reduce_status(run, running, now=later)
    assert again == run.status  # nothing changed: the operator patches nothing
    done = Observed(job=make_job(conditions=("Complete",), succeeded=1),
                    pods=[make_pod("p", "Succeeded", exit_code=0, message=FT_SUMMARY)])  # fmt: skip
    finished = reduce_status(run, done, now=later)
    times = {c.type: c.last_transition_time for c in finished.conditions}
    assert times == {"Waiting": NOW, "Running": later, "Ready": later}


def test_a_spec_that_no_longer_parses_fails_with_the_fields_named_and_keeps_the_rest_of_status() -> None:
    # What a newer operator wrote (a field this version does not know, an output recorded before) stays as it was.
    current = {"phase": "Running", "count": 20, "artifact": {"uri": "pvc://a/traces", "digest": DIGEST},
               "newerField": {"kept": True}, "conditions": [{"type": "Running", "status": "True",
               "reason": "PodRunning", "message": "", "lastTransitionTime": EARLIER}]}  # fmt: skip
    status = reduce_invalid(current, 2, "spec.sampling.samples: must be >= 1", now=NOW)
    assert status == {
        **current,
        "phase": "Failed",
        "observedGeneration": 2,
        "conditions": [
            {"type": "Running", "status": "True", "reason": "PodRunning", "message": "",
             "lastTransitionTime": EARLIER},
            {"type": "Failed", "status": "True", "reason": "InvalidSpec",
             "message": "spec.sampling.samples: must be >= 1", "lastTransitionTime": "2026-12-01T12:00:00Z",
             "observedGeneration": 2},
        ],
    }  # fmt: skip


def _indexed(pod: dict[str, Any], index: int) -> dict[str, Any]:
    pod["metadata"]["annotations"] = {"batch.kubernetes.io/job-completion-index": str(index)}
    return pod


def test_a_two_node_run_takes_the_summary_of_index_0_and_counts_its_pods_as_one_attempt() -> None:
    run = example("quickstart-lora", distributed={"nodes": 2, "gpusPerNode": 0, "strategy": "ddp"})
    pods = [
        _indexed(make_pod("p0", "Succeeded", exit_code=0, message=FT_SUMMARY), 0),
        # Node rank 1 writes no summary, and is the newest pod: it must not hide index 0's.
        _indexed(make_pod("p1", "Succeeded", exit_code=0, created="2026-12-01T11:00:01Z"), 1),
    ]
    done = reduce_status(run, Observed(job=make_job(conditions=("Complete",), succeeded=2), pods=pods), now=NOW)
    assert done.model_dump(mode="json", by_alias=True, exclude_none=True, include={"outputs", "attempts"}) == {
        "outputs": {"model": {"uri": "pvc://a/model", "digest": DIGEST}}, "attempts": 1,
    }  # fmt: skip
    # A multi-node attempt is one Job, whatever its pods' counts say: a second attempt is a restart.
    restarted = run.model_copy(update={"status": FineTuneRunStatus(restarts=1)})
    retried = reduce_status(restarted, Observed(job=make_job(active=2, failed=2), pods=pods), now=NOW)
    assert retried.attempts == 2


def _rank(index: int, code: int, finished: str, *, deleted: bool = False, disrupted: bool = False) -> dict[str, Any]:
    pod = _indexed(make_pod(f"tune-finetune-{index}-x", "Failed", exit_code=code, message=f"rank {index} said"), index)
    pod["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"] = finished
    if deleted:
        pod["metadata"]["deletionTimestamp"] = finished
    if disrupted:
        pod["status"]["conditions"].append({"type": "DisruptionTarget", "status": "True"})
    return pod


def _two_node_run(max_retries: int, status: FineTuneRunStatus) -> Resource:
    run = example(
        "quickstart-lora", distributed={"nodes": 2, "gpusPerNode": 0, "strategy": "ddp"}, maxRetries=max_retries
    )
    return run.model_copy(update={"status": status})


FAILED_JOB = make_job(conditions=("Failed",), failed=2, reason="BackoffLimitExceeded")
# Rank 1 was SIGKILLed first; the Job controller then deleted rank 0, which ended on SIGTERM a second later.
KILLED_RANK_1 = [_rank(0, 143, "2026-12-01T11:10:01Z", deleted=True), _rank(1, 137, "2026-12-01T11:10:00Z")]


def test_a_failed_rank_ends_the_attempt_and_the_run_restarts_every_rank() -> None:
    run = _two_node_run(3, FineTuneRunStatus(progress={"step": 7}))  # type: ignore[arg-type]
    status = reduce_status(run, Observed(job=FAILED_JOB, pods=KILLED_RANK_1), now=NOW)
    assert isinstance(status, FineTuneRunStatus)
    assert (status.phase, status.restarts, status.attempts) == ("Running", 1, 2)
    [ended] = status.ended_attempts
    assert (ended.attempt, ended.reason, ended.last_step, ended.ended_at) == (1, "RankFailed", 7, NOW)
    assert "code 137 on attempt 1 (pod tune-finetune-1-x): rank 1 said" in ended.message  # the cause, not rank 0
    running = conditions_of(status)["Running"]
    assert running[:2] == ("True", "Restarting")
    assert "attempt 1 ended (RankFailed)" in running[2] and "as attempt 2" in running[2]


@pytest.mark.parametrize("rank0_finished", ["2026-12-01T11:10:00Z", "2026-12-01T11:09:59Z"], ids=["tie", "earlier"])
def test_a_rank_killed_by_a_signal_is_the_cause_over_a_peer_that_failed_on_its_loss(rank0_finished: str) -> None:
    """As the cluster test saw it: rank 1's worker is SIGKILLed; rank 0's worker fails on its own at once (gloo:
    the peer closed the connection), so it is not deleted, and ends within the same second, or by clock skew even
    the second before. Both launchers exit 1; only rank 1's summary names a signal."""
    gloo = (
        "RuntimeError: [pair.cc:598] Connection closed by peer. This is typically caused by a remote worker crashing."
    )
    rank0 = _rank(0, 1, rank0_finished)
    rank0["status"]["containerStatuses"][0]["state"]["terminated"]["message"] = summary(
        stage="finetune", error=gloo, exitCode=1
    )
    rank1 = _rank(1, 1, "2026-12-01T11:10:00Z")
    rank1["status"]["containerStatuses"][0]["state"]["terminated"]["message"] = summary(
        stage="finetune", error="rank 1 failed with exit code -9: Signal 9 (SIGKILL)", exitCode=1, signal="SIGKILL"
    )
    run = _two_node_run(3, FineTuneRunStatus())
    status = reduce_status(run, Observed(job=FAILED_JOB, pods=[rank0, rank1]), now=NOW)
    assert isinstance(status, FineTuneRunStatus)
    [ended] = status.ended_attempts
    assert "(pod tune-finetune-1-x): rank 1 failed with exit code -9" in ended.message, ended.message


def test_retries_are_spent_by_failed_attempts_and_not_by_disruptions() -> None:
    history = [
        {"attempt": 1, "reason": "Disrupted", "message": "preempted"},
        {"attempt": 2, "reason": "RankFailed", "message": "killed"},
    ]
    spent = _two_node_run(1, FineTuneRunStatus(restarts=2, endedAttempts=history))  # type: ignore[call-arg]
    failed = reduce_status(spent, Observed(job=FAILED_JOB, pods=KILLED_RANK_1), now=NOW)
    assert isinstance(failed, FineTuneRunStatus)
    assert (failed.phase, failed.restarts, failed.attempts, len(failed.ended_attempts)) == ("Failed", 2, 3, 2)
    assert "on attempt 3 (pod tune-finetune-1-x)" in conditions_of(failed)["Failed"][2]

    disrupted = [_rank(0, 143, "2026-12-01T11:10:01Z", deleted=True), _rank(1, 143, "2026-12-01T11:10:00Z",
                                                                           disrupted=True)]  # fmt: skip
    again = reduce_status(spent, Observed(job=FAILED_JOB, pods=disrupted), now=NOW)
    assert isinstance(again, FineTuneRunStatus)
    assert (again.phase, again.restarts, again.ended_attempts[-1].reason) == ("Running", 3, "Disrupted")


def test_a_permanent_exit_code_on_any_rank_fails_the_run_without_a_restart() -> None:
    pods = [_rank(0, 143, "2026-12-01T11:10:01Z", deleted=True), _rank(1, 3, "2026-12-01T11:10:00Z")]
    job = make_job(conditions=("Failed",), failed=2, reason="PodFailurePolicy")
    status = reduce_status(_two_node_run(3, FineTuneRunStatus()), Observed(job=job, pods=pods), now=NOW)
    assert isinstance(status, FineTuneRunStatus)
    assert (status.phase, status.restarts, status.ended_attempts) == ("Failed", 0, [])


def test_the_retry_budget_counts_every_failed_attempt_not_only_the_kept_ones() -> None:
    """120 disruptions push the one failed attempt out of endedAttempts (it keeps 100); it still counts."""
    history = [{"attempt": 1, "reason": "RankFailed", "message": "killed"}] + [
        {"attempt": n, "reason": "Disrupted", "message": "preempted"} for n in range(2, 122)
    ]
    status = FineTuneRunStatus(restarts=121, endedAttempts=history[-100:], failedAttempts=1)  # type: ignore[call-arg]
    assert [a.reason for a in status.ended_attempts].count("RankFailed") == 0
    failed = reduce_status(_two_node_run(1, status), Observed(job=FAILED_JOB, pods=KILLED_RANK_1), now=NOW)
    assert isinstance(failed, FineTuneRunStatus)
    assert (failed.phase, failed.failed_attempts, failed.restarts) == ("Failed", 1, 121)
    # Under the budget, a failed attempt restarts and is counted in the field, not only in the list.
    restarted = reduce_status(_two_node_run(2, status), Observed(job=FAILED_JOB, pods=KILLED_RANK_1), now=NOW)
    assert isinstance(restarted, FineTuneRunStatus)
    assert (restarted.phase, restarted.failed_attempts, restarted.restarts) == ("Running", 2, 122)


def test_a_benchmark_file_name_of_any_length_does_not_freeze_status() -> None:
    """A custom benchmark is named after its file; a 2000-character name must not make reducing raise."""
    run = example("quickstart-after")
    name = "b" * 2000
    observed = Observed(job=make_job("quickstart-after-evaluate", active=1),
                        pods=[make_pod("p", "Running", container="evaluate")],
                        marker={"benchmark": name, "done": 1, "total": 4})  # fmt: skip
    status = reduce_status(run, observed, now=NOW)
    assert status.model_dump(mode="json", by_alias=True, exclude_none=True)["progress"] == {
        "benchmark": name, "done": 1, "total": 4, "percent": 25.0,
    }  # fmt: skip
    # Even a marker this version cannot read leaves the rest of status to move on.
    odd = Observed(job=observed.job, pods=observed.pods, marker={"benchmark": ["not", "a", "name"], "done": 1})
    assert reduce_status(run, odd, now=NOW).phase == "Running"


def test_status_fields_this_version_does_not_know_are_kept() -> None:
    """A status written by a newer operator parses, and reducing it writes the unknown fields back unchanged."""
    doc = {
        "apiVersion": "cotlab.dev/v1alpha1",
        "kind": "TraceDataset",
        "metadata": {"name": "traces", "namespace": "team-a", "uid": "u1", "generation": 1},
        "spec": {"source": {"uri": "pvc://data/traces.jsonl"}},
        "status": {"phase": "Running", "shards": 4, "stats": {"tokens": {"min": 1, "p50": 2, "p90": 3, "max": 4,
                                                                          "p99": 4}}},
    }  # fmt: skip
    resource = parse_resource(doc)
    observed = Observed(job=make_job("traces-curate", active=1), pods=[make_pod("p", "Running", container="curate")])
    wire = reduce_status(resource, observed, now=NOW).to_wire()
    assert wire["shards"] == 4 and wire["stats"]["tokens"] == {"min": 1, "p50": 2, "p90": 3, "max": 4, "p99": 4}


@pytest.mark.parametrize(
    ("conditions", "finished"),
    [
        ([("Ready", "True"), ("Running", "False")], True),
        ([("Failed", "True")], True),
        ([("Running", "True"), ("Ready", "False")], False),
        ([("Waiting", "True")], False),
        ([], False),
    ],
    ids=["ready", "failed", "running", "waiting", "new"],
)
def test_finished_means_ready_or_failed(conditions: list[tuple[str, str]], finished: bool) -> None:
    assert is_finished(conditions) is finished


def _completed(at: str) -> dict[str, Any]:
    job = make_job("quickstart-after-evaluate", conditions=("Complete",), succeeded=1)
    job["status"]["conditions"][0]["lastTransitionTime"] = at
    return job


@pytest.mark.parametrize(
    ("completed", "pods", "current", "phase"),
    [
        ("2026-12-01T11:59:50Z", [make_pod("p", "Running", container="evaluate")], True, "Running"),
        ("2026-12-01T11:50:00Z", [make_pod("p", "Running", container="evaluate")], False, "Running"),
        ("2026-12-01T11:50:00Z", [], True, "Failed"),
        ("2026-12-01T11:59:50Z", [make_pod("p", "Succeeded", container="evaluate", exit_code=0)], True, "Failed"),
    ],
    ids=["pod-status-late", "pod-watch-down", "pods-gone-after-the-grace", "pod-says-no-summary"],
)
def test_a_finished_job_is_recorded_only_on_its_pods_word(
    completed: str, pods: list[dict[str, Any]], current: bool, phase: str
) -> None:
    """The Job's Complete can arrive before its pod's final status (another watch, or one resuming after an
    outage); a result is recorded once, so the operator waits for the pod, unless it is truly gone."""
    run = example("quickstart-after")
    running = reduce_status(run, Observed(job=make_job("quickstart-after-evaluate", active=1),
                                          pods=[make_pod("p", "Running", container="evaluate")]), now=NOW)  # fmt: skip
    run = run.model_copy(update={"status": running})
    status = reduce_status(run, Observed(job=_completed(completed), pods=pods, pods_current=current), now=NOW)
    assert status.phase == phase
    if phase == "Failed":
        assert conditions_of(status)["Failed"][1] == "NoSummary"
