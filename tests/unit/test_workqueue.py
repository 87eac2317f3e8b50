"""The work queue: dedup, no concurrent processing of a key, per-key backoff."""

from __future__ import annotations

import asyncio

from conch.workqueue import WorkQueue


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def test_duplicates_collapse() -> None:
    async def scenario() -> None:
        q = WorkQueue()
        for _ in range(3):
            q.add("a")
        q.add("b")
        assert len(q) == 2
        assert await q.get() == "a"
        assert await q.get() == "b"

    run(scenario())


def test_key_added_while_active_runs_again_after() -> None:
    async def scenario() -> None:
        q = WorkQueue()
        q.add("a")
        key = await q.get()
        q.add("a")  # e.g. an event arrives mid-reconcile
        assert len(q) == 0  # not handed to a second worker
        q.done(key)
        assert len(q) == 1 and await q.get() == "a"

    run(scenario())


def test_failures_back_off_exponentially_and_reset() -> None:
    async def scenario() -> None:
        q = WorkQueue(base_delay=0.01, max_delay=0.04)
        delays = []
        for _ in range(4):
            q.add("a")
            key = await asyncio.wait_for(q.get(), 1)
            delays.append(q.done(key, failed=True))
        assert delays == [0.01, 0.02, 0.04, 0.04]
        key = await asyncio.wait_for(q.get(), 1)  # the scheduled retry arrives
        assert q.done(key) == 0.0
        q.add("a")
        key = await q.get()
        assert q.done(key, failed=True) == 0.01

    run(scenario())


def test_requeue_after_schedules_a_later_look() -> None:
    async def scenario() -> None:
        q = WorkQueue()
        q.add("a")
        key = await q.get()
        assert q.done(key, requeue_after=0.01) == 0.01
        assert await asyncio.wait_for(q.get(), 1) == "a"

    run(scenario())


def test_urgent_keys_go_first_and_a_queued_key_can_become_urgent() -> None:
    async def scenario() -> None:
        q = WorkQueue()
        for key in ("a", "b", "c"):
            q.add(key)
        q.add("new", urgent=True)
        q.add("c", urgent=True)  # already queued: moved ahead, not queued twice
        assert len(q) == 4
        assert [await q.get() for _ in range(4)] == ["new", "c", "a", "b"]

    run(scenario())


def test_an_urgent_add_while_active_runs_again_first() -> None:
    async def scenario() -> None:
        q = WorkQueue()
        q.add("a")
        key = await q.get()
        q.add("b")
        q.add("a", urgent=True)  # its spec changed mid-reconcile
        q.done(key)
        assert [await q.get(), await q.get()] == ["a", "b"]

    run(scenario())


def test_a_key_added_for_later_waits_once_for_the_earliest_time() -> None:
    async def scenario() -> None:
        q = WorkQueue()
        loop = asyncio.get_running_loop()
        started = loop.time()
        for after in (0.2, 0.05, 0.3):  # adds in between join the earliest
            q.add("a", after=after)
        assert await asyncio.wait_for(q.get(), 1) == "a"
        assert 0.04 <= loop.time() - started < 0.2
        q.done("a")
        await asyncio.sleep(0.35)
        assert len(q) == 0  # the later adds did not queue it again

    run(scenario())
