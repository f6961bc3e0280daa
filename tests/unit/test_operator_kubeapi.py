"""Two small parts of the API client: the client-side rate limit (a burst at once, then `qps` requests a second, as
client-go's token bucket) and which version of Kueue's API it speaks."""

from __future__ import annotations

import pytest

from cotlab.operator.kubeapi import Throttle, workload_version


class Clock:
    """Seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_qps() -> None:
    clock = Clock()
    throttle = Throttle(qps=10.0, burst=3, clock=clock)
    waits = [throttle.reserve() for _ in range(5)]
    assert waits == [0.0, 0.0, 0.0, 0.1, 0.2]  # three at once, then one every 1/qps seconds
    clock.now += 1.0  # a quiet second refills the bucket, but never beyond the burst
    assert [round(throttle.reserve(), 6) for _ in range(4)] == [0.0, 0.0, 0.0, 0.1]


@pytest.mark.parametrize(
    ("versions", "want"),
    [
        # Kueue v0.17: v1beta1 still served (through its conversion webhook), v1beta2 stored.
        ([("v1beta1", True, False), ("v1beta2", True, True)], "v1beta2"),
        ([("v1beta1", True, True)], "v1beta1"),  # an older Kueue
        ([("v1beta2", True, True), ("v1", True, False)], "v1beta2"),  # a newer one, before it switches storage
        ([("v1beta1", False, True), ("v1beta2", True, False)], "v1beta2"),
        ([], None),
    ],
    ids=["kueue-0.17", "older", "newer", "storage-not-served", "none"],
)
def test_the_kueue_version_is_read_from_its_crd(versions: list[tuple[str, bool, bool]], want: str | None) -> None:
    crd = {"spec": {"versions": [{"name": n, "served": served, "storage": stored} for n, served, stored in versions]}}
    assert workload_version(crd) == want
