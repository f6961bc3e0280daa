"""Progress of a running stage: the newest marker in its rank-0 pod's log, read at most every
`progress_interval_seconds` per resource (a log read is a request; a resync is not a reason to make one)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cotlab.api import Resource
from cotlab.api.podcontract import STAGE_BY_KIND, parse_marker

from .cache import Key
from .kubeapi import KubeApi
from .settings import OperatorSettings

logger = logging.getLogger(__name__)


@dataclass
class _Progress:
    """Per resource: when its pod's log was last read, and the newest marker found."""

    uid: str | None = None
    read_at: float = 0.0
    pod: str | None = None
    marker: dict[str, Any] | None = None


def _rank0(pods: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest running pod of completion index 0 (or of no index): the one whose log carries progress."""
    running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
    first = [
        p
        for p in running
        if (p["metadata"].get("annotations") or {}).get("batch.kubernetes.io/job-completion-index", "0") == "0"
    ]
    return max(first, key=lambda p: p["metadata"].get("creationTimestamp") or "", default=None)


class ProgressReader:
    """The newest marker of each running resource (by key, reset when the uid changes)."""

    def __init__(self, api: KubeApi, settings: OperatorSettings) -> None:
        self.api, self.settings = api, settings
        self._seen: dict[Key, _Progress] = {}

    def forget(self, key: Key) -> None:
        self._seen.pop(key, None)

    def newest(self, resource: Resource, pods: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The newest progress marker of the rank-0 pod, its log read at most every progress_interval_seconds."""
        key = (resource.kind, resource.metadata.namespace or "default", resource.metadata.name)
        progress = self._seen.get(key)
        if progress is None or progress.uid != resource.metadata.uid:
            progress = self._seen[key] = _Progress(uid=resource.metadata.uid)
        pod = _rank0(pods)
        if pod is None:
            return progress.marker
        name = pod["metadata"]["name"]
        if name == progress.pod and time.monotonic() - progress.read_at < self.settings.progress_interval_seconds:
            return progress.marker
        progress.read_at, progress.pod = time.monotonic(), name
        try:
            lines = self.settings.progress_tail_lines
            text = self.api.log_tail(pod["metadata"]["namespace"], name, STAGE_BY_KIND[resource.kind], lines)
        except Exception:  # noqa: BLE001 - a log that cannot be read yet only delays progress
            logger.debug("log not readable", extra={"pod": name})
            return progress.marker
        for line in reversed(text.splitlines()):
            marker = parse_marker(line)
            if marker is not None:
                progress.marker = marker
                break
        return progress.marker
