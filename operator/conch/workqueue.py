"""A deduplicating work queue with per-key backoff (controller-runtime's semantics, asyncio).

A key is never processed by two workers at once; a key added while it is being processed is
processed again afterwards; a key added for later waits once, for the earliest time asked;
failures back off exponentially per key, success resets it.

Urgent keys (a spec the operator has not acted on yet: a new ModelService, a changed one)
are handed out before routine ones (a child's status moved, a poll), so arrivals never wait
behind the re-reconciles of every service that is still starting.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable


class WorkQueue:
    def __init__(self, base_delay: float = 0.5, max_delay: float = 60.0) -> None:
        self._tokens: asyncio.Queue[None] = asyncio.Queue()
        """One token per queued key: what a worker waits on."""
        self._urgent: deque[Hashable] = deque()
        self._routine: deque[Hashable] = deque()
        self._queued: set[Hashable] = set()
        self._active: set[Hashable] = set()
        self._dirty: dict[Hashable, bool] = {}
        """Keys added while active -> whether urgently."""
        self._waiting: dict[Hashable, asyncio.TimerHandle] = {}
        """Keys added for later -> their timer."""
        self._failures: dict[Hashable, int] = {}
        self._base = base_delay
        self._max = max_delay

    def add(self, key: Hashable, after: float = 0, urgent: bool = False) -> None:
        """Queue `key`, or `after` seconds from now: a key waits once, for the earliest time
        asked (adds in between join it)."""
        if after > 0:
            loop = asyncio.get_running_loop()
            when = loop.time() + after
            waiting = self._waiting.get(key)
            if waiting is not None and waiting.when() <= when:
                return
            if waiting is not None:
                waiting.cancel()
            self._waiting[key] = loop.call_at(when, self._due, key)
            return
        if key in self._active:
            self._dirty[key] = self._dirty.get(key, False) or urgent
        elif key not in self._queued:
            self._queued.add(key)
            (self._urgent if urgent else self._routine).append(key)
            self._tokens.put_nowait(None)
        elif urgent and key not in self._urgent:
            self._routine.remove(key)
            self._urgent.append(key)

    def _due(self, key: Hashable) -> None:
        del self._waiting[key]
        self.add(key)

    async def get(self) -> Hashable:
        await self._tokens.get()
        key = self._urgent.popleft() if self._urgent else self._routine.popleft()
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
            self.add(key, urgent=self._dirty.pop(key))
        elif delay:
            self.add(key, after=delay)
        return delay

    def __len__(self) -> int:
        return len(self._urgent) + len(self._routine)
