"""Events posted off the reconcile path, at a bounded rate (client-go's recorder is async too).

A reconcile hands its Events to a `Poster` and goes on: posting them used to cost each new
ModelService two API requests on the worker that was creating its children. One thread
posts them in order, at most `rate` per second, so a burst of new services never lets Events
crowd out the writes that make them serve. When more than `capacity` wait, the newest are
dropped and counted (`conch_events_dropped_total`): Events are best effort, status is the
record.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from conch.builders.meta import Manifest
from conch.errors import ConchError

log = logging.getLogger("conch.events")


@dataclass(frozen=True)
class Pending:
    """One Event to post: about `regarding` (its apiVersion, kind and metadata)."""

    regarding: Manifest
    type: str
    reason: str
    note: str


Post = Callable[[Pending], None]


def regarding(obj: Manifest) -> Manifest:
    """What an Event needs of the object it is about (not the whole object, which may be big
    and is kept until the Event is posted)."""
    meta = obj["metadata"]
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "metadata": {k: meta.get(k) for k in ("name", "namespace", "uid", "resourceVersion")},
    }


class Poster:
    """Posts Events from one background thread, in order, at most `rate` per second."""

    def __init__(
        self,
        post: Post,
        rate: float = 20.0,
        capacity: int = 1000,
        dropped: Callable[[], None] = lambda: None,
    ) -> None:
        self._post = post
        self._interval = 1.0 / rate
        self._queue: queue.Queue[Pending | None] = queue.Queue(capacity)
        self._dropped = dropped
        self._thread: threading.Thread | None = None

    def add(self, event: Pending) -> None:
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self._dropped()
            log.warning("dropped Event %s for %s", event.reason, event.regarding["metadata"])

    def start(self) -> Poster:
        self._thread = threading.Thread(target=self._run, daemon=True, name="events")
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Post what is queued (within `timeout`), then stop."""
        if self._thread is None:
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued Event is posted (tests, clean stops)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._queue.unfinished_tasks

    def _run(self) -> None:
        while (event := self._queue.get()) is not None:
            started = time.monotonic()
            try:
                self._post(event)
            except ConchError as error:
                meta = event.regarding["metadata"]
                log.warning(
                    "could not post Event for %s/%s: %s", meta["namespace"], meta["name"], error
                )
            except Exception:
                log.exception("posting an Event")
            finally:
                self._queue.task_done()
            time.sleep(max(0.0, self._interval - (time.monotonic() - started)))
        self._queue.task_done()
