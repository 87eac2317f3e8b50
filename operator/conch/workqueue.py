"""A deduplicating work queue with per-key backoff (controller-runtime's semantics, asyncio).

A key is never processed by two workers at once; a key added while it is being processed is
processed again afterwards; failures back off exponentially per key, success resets it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable


class WorkQueue:
    def __init__(self, base_delay: float = 0.5, max_delay: float = 60.0) -> None:
        self._queue: asyncio.Queue[Hashable] = asyncio.Queue()
        self._queued: set[Hashable] = set()
        self._active: set[Hashable] = set()
        self._dirty: set[Hashable] = set()
        self._failures: dict[Hashable, int] = {}
        self._base = base_delay
        self._max = max_delay

    def add(self, key: Hashable, after: float = 0) -> None:
        if after > 0:
            asyncio.get_running_loop().call_later(after, self.add, key)
            return
        if key in self._active:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    async def get(self) -> Hashable:
        key = await self._queue.get()
        self._queued.discard(key)
        self._active.add(key)
        return key

    def done(self, key: Hashable, failed: bool = False, requeue_after: float = 0) -> float:
        """Mark `key` processed; returns the delay before it runs again (0: not scheduled)."""
        self._active.discard(key)
        delay = 0.0
        if failed:
            self._failures[key] = self._failures.get(key, 0) + 1
            delay = min(self._base * 2 ** (self._failures[key] - 1), self._max)
        else:
            self._failures.pop(key, None)
            delay = requeue_after
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)
        elif delay:
            self.add(key, after=delay)
        return delay

    def __len__(self) -> int:
        return self._queue.qsize()
