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
