"""The work queue: a key waits at most once, and one added while it is worked on is worked on again afterwards."""

from __future__ import annotations

import asyncio

from cotlab.operator.workqueue import WorkQueue


def test_a_key_waits_once_and_is_requeued_when_dirty() -> None:
    async def scenario() -> list[str]:
        queue: WorkQueue[str] = WorkQueue()
        queue.add("a")
        queue.add("a")  # already waiting: one entry
        queue.add("b")
        assert len(queue) == 2
        first = await queue.get()
        queue.add(first)  # an event while "a" is being reconciled: "a" must run again after, not beside
        assert len(queue) == 1
        second = await queue.get()
        queue.done(second)
        queue.done(first)
        third = await queue.get()
        queue.done(third)
        return [first, second, third]

    assert asyncio.run(scenario()) == ["a", "b", "a"]


def test_add_after_delays() -> None:
    async def scenario() -> float:
        queue: WorkQueue[str] = WorkQueue()
        loop = asyncio.get_running_loop()
        start = loop.time()
        queue.add_after("a", 0.05)
        assert len(queue) == 0
        await queue.get()
        return loop.time() - start

    assert asyncio.run(scenario()) >= 0.05


def test_the_resync_passes_over_a_key_waiting_out_its_backoff() -> None:
    async def scenario() -> tuple[int, int, list[str]]:
        queue: WorkQueue[str] = WorkQueue()
        queue.retry_later("failing", 0.2)
        skipped = queue.resync(["failing", "fine"])  # a resync during the backoff queues only "fine"
        first = await queue.get()
        queue.done(first)
        waiting = len(queue)
        second = await queue.get()  # "failing" comes back when its backoff is over, not before
        queue.done(second)
        queue.forget(second)
        return skipped, waiting, [first, second]

    assert asyncio.run(scenario()) == (1, 0, ["fine", "failing"])


def test_a_key_forgotten_during_its_backoff_is_not_queued_again() -> None:
    async def scenario() -> int:
        queue: WorkQueue[str] = WorkQueue()
        queue.retry_later("deleted", 0.01)
        queue.forget("deleted")
        await asyncio.sleep(0.05)
        return len(queue)

    assert asyncio.run(scenario()) == 0
