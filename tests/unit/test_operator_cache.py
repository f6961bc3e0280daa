"""The controller's cache: a (re-)list replaces what was kept, so what it no longer returns is dropped and its owner
reconciled; events update it one by one. Bodies as the informers deliver them (slimmed), no API server needed."""

from __future__ import annotations

import asyncio
from typing import Any

from cotlab.operator.controller import Controller
from cotlab.operator.informers import slim_job, slim_pod
from cotlab.operator.settings import OperatorSettings


def job(name: str, owner: str, uid: str) -> dict[str, Any]:
    return slim_job({
        "kind": "Job",
        "metadata": {"name": name, "namespace": "team-a", "uid": uid, "managedFields": [{"manager": "x"}],
                     "ownerReferences": [{"kind": "EvalRun", "name": owner, "uid": f"{owner}-u", "controller": True}]},
        "spec": {"suspend": False, "template": {"spec": {"containers": [{"name": "evaluate"}]}}},
        "status": {"active": 1},
    })  # fmt: skip


def pod(name: str, job_name: str, job_uid: str) -> dict[str, Any]:
    return slim_pod({
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "team-a", "labels": {"batch.kubernetes.io/job-name": job_name},
                     "ownerReferences": [{"kind": "Job", "name": job_name, "uid": job_uid, "controller": True}]},
        "spec": {"containers": [{"name": "evaluate", "env": [{"name": "X", "value": "y" * 1000}]}]},
        "status": {"phase": "Running"},
    })  # fmt: skip


def test_a_relist_drops_what_it_no_longer_returns_and_queues_the_owners() -> None:
    async def scenario() -> tuple[list[str], list[str], list[Any]]:
        controller = Controller(OperatorSettings())
        controller.observe("Job", "ADDED", job("a-evaluate", "a", "ja"))
        controller.observe("Job", "ADDED", job("b-evaluate", "b", "jb"))
        controller.observe("Pod", "ADDED", pod("b-evaluate-x", "b-evaluate", "jb"))
        while len(controller.queue):  # what the events queued
            controller.queue.done(await controller.queue.get())
        # The watch was down while b's Job and pod were deleted; the re-list returns only a's Job.
        controller._replace("Job", "team-a", [job("a-evaluate", "a", "ja")])
        controller._replace("Pod", None, [])
        queued = []
        while len(controller.queue):
            key = await controller.queue.get()
            controller.queue.done(key)
            queued.append(key)
        return sorted(n for _, n in controller.cache.jobs), sorted(controller.cache.pods), queued

    jobs, pods, queued = asyncio.run(scenario())
    assert jobs == ["a-evaluate"] and pods == []
    assert sorted(set(queued)) == [("EvalRun", "team-a", "a"), ("EvalRun", "team-a", "b")]


def test_informers_keep_only_what_the_reducers_read() -> None:
    kept = pod("p", "j", "ju")
    assert set(kept) == {"kind", "metadata", "status"} and "managedFields" not in kept["metadata"]
    assert set(job("j", "o", "u")) == {"kind", "metadata", "spec", "status"}
    assert job("j", "o", "u")["spec"] == {"suspend": False}
