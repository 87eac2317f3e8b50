"""events.Poster: Events leave the reconcile, in order, at a bounded rate, dropped (and
counted) only past its capacity."""

from __future__ import annotations

import threading
import time

from conch import events
from conch.errors import ApiError

SERVICE = {
    "apiVersion": "serving.conch.dev/v1alpha1",
    "kind": "ModelService",
    "metadata": {
        "name": "a",
        "namespace": "ns",
        "uid": "u",
        "resourceVersion": "7",
        "labels": {"big": "x" * 1000},
    },
    "spec": {"modelVersion": "v1"},
}


def pending(reason: str) -> events.Pending:
    return events.Pending(events.regarding(SERVICE), "Normal", reason, "note")


def test_regarding_keeps_only_what_an_event_names() -> None:
    assert events.regarding(SERVICE) == {
        "apiVersion": "serving.conch.dev/v1alpha1",
        "kind": "ModelService",
        "metadata": {"name": "a", "namespace": "ns", "uid": "u", "resourceVersion": "7"},
    }


def test_posts_in_order_at_most_rate_per_second_and_survives_failures() -> None:
    posted: list[tuple[str, float]] = []

    def post(event: events.Pending) -> None:
        posted.append((event.reason, time.monotonic()))
        if event.reason == "r1":
            raise ApiError("the API server said no", 500)

    poster = events.Poster(post, rate=50).start()
    started = time.monotonic()
    for i in range(10):
        poster.add(pending(f"r{i}"))
    assert time.monotonic() - started < 0.05  # adding never waits for the API server
    assert poster.flush(5)
    poster.stop()
    assert [reason for reason, _ in posted] == [f"r{i}" for i in range(10)]
    # 10 Events at 50/s take at least 9 intervals of 20 ms
    assert posted[-1][1] - posted[0][1] >= 9 * 0.02 * 0.9


def test_past_capacity_the_newest_are_dropped_and_counted() -> None:
    entered, release = threading.Event(), threading.Event()
    dropped: list[int] = []
    posted: list[str] = []

    def post(event: events.Pending) -> None:
        entered.set()
        release.wait(5)
        posted.append(event.reason)

    poster = events.Poster(post, capacity=2, dropped=lambda: dropped.append(1)).start()
    poster.add(pending("first"))
    assert entered.wait(5)  # taken by the thread, which waits on `release`
    for reason in ("second", "third", "fourth"):
        poster.add(pending(reason))
    assert len(dropped) == 1
    release.set()
    assert poster.flush(5)
    poster.stop()
    assert posted == ["first", "second", "third"]
