"""A de-duplicating work queue, as controller-runtime's: a key waits at most once, and is never worked on twice at once.

Adding a key that is being worked on marks it dirty: it is queued again when the worker is done, so the newest
state is always reconciled after the event that announced it. A key whose reconcile failed waits out its backoff
(`retry_later`): the resync (`resync`) passes it over until then, so a failing key is not tried every resync
period whatever its backoff says; an event (`add`) still queues it, as controller-runtime's do. All methods run
on the event loop's thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)


class WorkQueue(Generic[Key]):
    def __init__(self) -> None:
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._waiting: set[Key] = set()
        self._active: set[Key] = set()
        self._dirty: set[Key] = set()
        self._backoff_until: dict[Key, float] = {}

    def add(self, key: Key) -> None:
        if key in self._active:
            self._dirty.add(key)
        elif key not in self._waiting:
            self._waiting.add(key)
            self._queue.put_nowait(key)

    def add_after(self, key: Key, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self.add, key)

    def retry_later(self, key: Key, delay: float) -> None:
        """Queue `key` again after `delay`, and keep the resync from queueing it sooner."""
        loop = asyncio.get_running_loop()
        self._backoff_until[key] = loop.time() + delay
        loop.call_later(delay, self._retry, key)

    def _retry(self, key: Key) -> None:
        if key in self._backoff_until:  # not forgotten (succeeded, or deleted) in the meantime
            self.add(key)

    def forget(self, key: Key) -> None:
        """`key` succeeded (or is gone): no backoff holds it any more."""
        self._backoff_until.pop(key, None)

    def backing_off(self, key: Key) -> bool:
        return asyncio.get_running_loop().time() < self._backoff_until.get(key, 0.0)

    def resync(self, keys: Iterable[Key]) -> int:
        """Queue every key not waiting out a backoff; returns how many were passed over."""
        skipped = 0
        for key in keys:
            if self.backing_off(key):
                skipped += 1
            else:
                self.add(key)
        return skipped

    async def get(self) -> Key:
        key = await self._queue.get()
        self._waiting.discard(key)
        self._active.add(key)
        return key

    def done(self, key: Key) -> None:
        self._active.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def __len__(self) -> int:
        return len(self._waiting)
