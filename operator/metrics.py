"""Prometheus metrics of the operator, in a registry of its own (several operators can live in one test process)."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# From apply to Running / Ready: seconds for a CPU run, hours for a study arm.
_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)


class OperatorMetrics:
    """Reconciles, errors, API requests, resources by kind and phase, seconds from apply to Running and Ready."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.reconciles = Counter("cotlab_operator_reconciles", "Reconciles run", ["kind"], registry=self.registry)
        self.errors = Counter(
            "cotlab_operator_reconcile_errors", "Reconciles that raised", ["kind"], registry=self.registry
        )
        self.api_requests = Counter(
            "cotlab_operator_api_requests",
            "Requests sent, by RBAC verb and resource",
            ["verb", "resource"],
            registry=self.registry,
        )
        self.watch_failures = Counter(
            "cotlab_operator_watch_failures",
            "Lists and watches that failed (retried with backoff)",
            ["kind"],
            registry=self.registry,
        )
        self.resources = Gauge(
            "cotlab_operator_resources", "Resources by phase", ["kind", "phase"], registry=self.registry
        )
        self.to_running = Histogram(
            "cotlab_operator_seconds_to_running", "Seconds from creation to Running", ["kind"],
            buckets=_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.to_ready = Histogram(
            "cotlab_operator_seconds_to_ready", "Seconds from creation to Ready", ["kind"],
            buckets=_BUCKETS, registry=self.registry,
        )  # fmt: skip

    def count_phases(self, phases: Iterable[tuple[str, str]]) -> None:
        """Set the resources gauge from (kind, phase) pairs: the whole picture, so vanished phases drop to 0."""
        tally = Tally(phases)
        self.resources.clear()
        for (kind, phase), count in tally.items():
            self.resources.labels(kind, phase).set(count)

    def serve(self, port: int) -> None:
        """Expose /metrics on `port` (0: not at all)."""
        if port:
            start_http_server(port, registry=self.registry)
