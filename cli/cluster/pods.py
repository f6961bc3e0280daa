"""Reading the operator's pods: their rank, their age order, their container's state (for describe and logs)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cotlab.api.children import LABEL_KIND, LABEL_NAME, child_labels

# The Job controller's annotation on the pods of an Indexed Job: the rank of a multi-node run (0 otherwise).
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"


def pod_selector(kind: str, name: str) -> str:
    """The label selector of a resource's pods (the labels every child carries)."""
    return f"{LABEL_KIND}={kind},{LABEL_NAME}={child_labels(kind, name)[LABEL_NAME]}"


def by_age(pods: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Oldest first; pods of one Job made in the same second are ordered by name."""
    return sorted(pods, key=lambda p: (p["metadata"].get("creationTimestamp") or "", p["metadata"]["name"]))


def rank_of(pod: dict[str, Any]) -> int:
    value = str((pod["metadata"].get("annotations") or {}).get(COMPLETION_INDEX, "0"))
    return int(value) if value.isdigit() else 0


def newest_by_rank(pods: Sequence[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The newest pod of each rank: after a retry, the one that runs (or ran) last."""
    newest: dict[int, dict[str, Any]] = {}
    for pod in by_age(pods):
        newest[rank_of(pod)] = pod
    return dict(sorted(newest.items()))


def container_state(pod: dict[str, Any], container: str) -> dict[str, Any]:
    """The container's state (`{"running": …}`, `{"terminated": …}`, `{"waiting": …}`), or {} before it exists."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == container:
            return dict(status.get("state") or {})
    return {}


def has_started(pod: dict[str, Any], container: str) -> bool:
    """Whether the container has a log to read (it runs or ran)."""
    state = container_state(pod, container)
    return "running" in state or "terminated" in state


def is_finished(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
