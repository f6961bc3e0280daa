"""The client-side rate limit: a burst at once, then `qps` requests a second, as client-go's token bucket."""

from __future__ import annotations

from cotlab.operator.kubeapi import Throttle


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
