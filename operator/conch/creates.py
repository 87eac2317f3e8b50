"""Creates that the API server makes one at a time cluster-wide, sent off the reconcile.

A Service's ClusterIP is allocated under one lock in the API server, held across the
allocation's IPAddress write (`plan.SERIALIZED_CREATES`). When services arrive faster than
it allocates, a reconcile that waited for its Service held a worker for seconds, and the
Deployments of the services behind it waited for a worker. Here a reconcile hands the
create over and goes on; a few threads of their own send the creates in order; when one
ends, its service is queued again. A create that failed is not sent off again: the next
reconcile writes it itself (`failed`), so a refusal and the status that reports it come
from one reconcile, and a lasting refusal is retried only when that service is.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Callable

from conch.builders.meta import Manifest
from conch.errors import ApiError, ConchError

log = logging.getLogger("conch.creates")

ObjectKey = tuple[str, str, str]
"""(kind, namespace, name)"""


def object_key(obj: Manifest) -> ObjectKey:
    meta = obj["metadata"]
    return obj["kind"], meta.get("namespace", ""), meta["name"]


class Creates:
    def __init__(self, create: Callable[[Manifest], object], threads: int = 4) -> None:
        self._create = create
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="create")
        self._lock = threading.Lock()
        self._in_flight: set[ObjectKey] = set()
        self._failed: set[ObjectKey] = set()

    def submit(self, obj: Manifest, done: Callable[[ConchError | None], None]) -> None:
        """Create `obj` unless its create is already under way; `done(error)` after it
        ended (error None: created), from one of this object's threads."""
        key = object_key(obj)
        with self._lock:
            if key in self._in_flight:
                return
            self._in_flight.add(key)
        self._pool.submit(self._run, key, obj, done)

    def _run(
        self, key: ObjectKey, obj: Manifest, done: Callable[[ConchError | None], None]
    ) -> None:
        error: ConchError | None = None
        try:
            self._create(obj)
        except ConchError as failed:
            error = failed
        except Exception as unexpected:  # never lose the service: it is queued again below
            log.exception("creating %s %s/%s", *key)
            error = ApiError(f"creating {key[0]} {key[2]}: {unexpected}")  # retried
        with self._lock:
            self._in_flight.discard(key)
            if error is not None:
                self._failed.add(key)
        done(error)

    def in_flight(self, obj: Manifest) -> bool:
        """Whether `obj`'s create was sent off here and has not ended yet."""
        with self._lock:
            return object_key(obj) in self._in_flight

    def failed(self, obj: Manifest) -> bool:
        """Whether `obj`'s last create sent off here failed (until `written`)."""
        with self._lock:
            return object_key(obj) in self._failed

    def written(self, obj: Manifest) -> None:
        """`obj` was written by a reconcile itself: sent off again when it must be created."""
        with self._lock:
            self._failed.discard(object_key(obj))

    def stop(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
