"""Which pod `cotctl logs` follows: the newest of each rank, by the Job controller's completion index."""

from __future__ import annotations

from typing import Any

from cotlab.cli.cluster.pods import container_state, has_started, newest_by_rank, pod_selector, rank_of


def pod(name: str, created: str, rank: str | None, state: dict[str, Any] | None = None) -> dict[str, Any]:
    annotations = {"batch.kubernetes.io/job-completion-index": rank} if rank is not None else {}
    statuses = [{"name": "finetune", "state": state}] if state is not None else []
    return {
        "metadata": {"name": name, "creationTimestamp": created, "annotations": annotations},
        "status": {"containerStatuses": statuses},
    }


def test_newest_pod_of_each_rank_wins_after_a_retry() -> None:
    pods = [
        pod("r1-retry", "2026-11-28T12:05:00Z", "1"),
        pod("r0-first", "2026-11-28T12:00:00Z", "0"),
        pod("r1-first", "2026-11-28T12:00:00Z", "1"),
        pod("r0-retry", "2026-11-28T12:04:00Z", "0"),
    ]
    assert {r: p["metadata"]["name"] for r, p in newest_by_rank(pods).items()} == {0: "r0-retry", 1: "r1-retry"}
    assert list(newest_by_rank(pods)) == [0, 1]


def test_a_pod_without_an_index_is_rank_zero_and_starts_when_its_container_runs() -> None:
    single = pod("p", "2026-11-28T12:00:00Z", None, {"waiting": {"reason": "ContainerCreating"}})
    assert rank_of(single) == 0 and not has_started(single, "finetune")
    running = pod("p", "2026-11-28T12:00:00Z", None, {"running": {"startedAt": "2026-11-28T12:00:01Z"}})
    assert has_started(running, "finetune") and container_state(running, "evaluate") == {}


def test_pods_are_selected_by_the_labels_every_child_carries() -> None:
    assert pod_selector("FineTuneRun", "qwq") == "cotlab.dev/kind=FineTuneRun,cotlab.dev/name=qwq"
