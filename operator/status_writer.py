"""Writing a resource's status: a merge patch only when it changed, written through to the cache, and an Event
(and the seconds-to-Running/Ready metrics) when its phase moved."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from cotlab.api import Condition, Phase, Reason
from cotlab.api.conditions import phase_condition

from .cache import Cache
from .kubeapi import KubeApi
from .metrics import OperatorMetrics

logger = logging.getLogger(__name__)


class StatusWriter:
    """Status patches and transition events of one operator."""

    def __init__(self, api: KubeApi, cache: Cache, metrics: OperatorMetrics, clock: Callable[[], datetime]) -> None:
        self.api, self.cache, self.metrics, self.clock = api, cache, metrics, clock

    def keep_finished(self, body: dict[str, Any]) -> None:
        """A finished resource's status stays as recorded; only observedGeneration follows a spec.suspend edit."""
        generation = body["metadata"].get("generation")
        if generation is not None and (body.get("status") or {}).get("observedGeneration") != generation:
            self.write(body, {**body["status"], "observedGeneration": generation})

    def write(self, body: dict[str, Any], status: dict[str, Any]) -> None:
        """Patch status if it changed (keys that vanished are removed); post an Event when the phase moved."""
        old = dict(body.get("status") or {})
        if old == status:
            return
        patch: dict[str, Any] = {**{k: None for k in old if k not in status}, **status}
        meta = body["metadata"]
        try:
            self.api.patch_status(body["kind"], meta["namespace"], meta["name"], patch)
        except ApiException as err:
            if err.status == 404:  # deleted meanwhile: its watch event will drop it
                return
            raise
        key = (body["kind"], meta["namespace"], meta["name"])
        with self.cache.lock:  # write-through: a reconcile before the watch delivers this must not undo it
            if key in self.cache.resources:
                self.cache.resources[key] = {**self.cache.resources[key], "status": status}
        before, after = old.get("phase") or Phase.PENDING, status.get("phase") or Phase.PENDING
        if before != after:
            self._transition(body, status, after)
        ended = status.get("endedAttempts") or []
        if len(ended) > len(old.get("endedAttempts") or []):  # Running before and after: no phase event says it
            last = ended[-1]
            message = f"attempt {last['attempt']} ended ({last['reason']}): {last.get('message', '')}"
            self.api.post_event(body, "Warning", Reason.RESTARTING, message)

    def _transition(self, body: dict[str, Any], status: dict[str, Any], phase: str) -> None:
        conditions = [_condition(c) for c in status.get("conditions") or []]
        deciding = phase_condition([c for c in conditions if c is not None])
        reason = deciding.reason if deciding else phase
        message = deciding.message if deciding else ""
        warning = phase == Phase.FAILED
        self.api.post_event(body, "Warning" if warning else "Normal", reason, message or f"phase {phase}")
        created = body["metadata"].get("creationTimestamp")
        if created:
            age = (self.clock() - datetime.fromisoformat(created.replace("Z", "+00:00"))).total_seconds()
            if phase == Phase.RUNNING:
                self.metrics.to_running.labels(body["kind"]).observe(age)
            elif phase == Phase.SUCCEEDED:
                self.metrics.to_ready.labels(body["kind"]).observe(age)
        meta = body["metadata"]
        logger.info("%s/%s/%s: %s (%s) %s", body["kind"], meta["namespace"], meta["name"], phase, reason, message)


def _condition(raw: dict[str, Any]) -> Condition | None:
    try:
        return Condition.model_validate(raw)
    except ValidationError:
        return None
