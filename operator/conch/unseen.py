"""The operator's own writes that their watch has not delivered yet: to ModelServices
(`Unseen`), and the children it created (`Created`).

A reconcile plans from the watched ModelService and never reads it from the API server,
except this: until the watch delivers a write of the operator's own (a status, an
acknowledged annotation), the object that write answered with is the newest one known,
and planning from the watched copy before it would undo what the last reconcile did.
Watches deliver every change in order, but a relist can skip one; so a write is no longer
waited for once a later spec arrives, and one not delivered within `LAG` seconds is read
from the API server instead. resourceVersions are compared for equality only (the API
gives them no order).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

from conch.builders.meta import Manifest
from conch.informer import without_managed_fields

Key = tuple[str, str]
"""(namespace, name)."""

LAG = 30.0
"""Seconds a write is waited for on the watch before the API server is asked."""


def resource_version(obj: Manifest | None) -> str | None:
    return None if obj is None else obj["metadata"].get("resourceVersion")


def _generation(obj: Manifest) -> int:
    return int(obj["metadata"].get("generation") or 0)


class Unseen:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._written: dict[Key, tuple[Manifest, float]] = {}
        """key -> (the object as the write answered, when)"""
        self._clock = clock
        self._lock = threading.Lock()

    def wrote(self, key: Key, answer: Manifest, watched: Callable[[], str | None]) -> None:
        """The operator wrote `key` and the API answered `answer`; `watched()` is the version
        its watch holds (asked under the lock `delivered` takes: its event may be in)."""
        with self._lock:
            if watched() != resource_version(answer):
                self._written[key] = (answer, self._clock())
            else:
                self._written.pop(key, None)

    def delivered(self, key: Key, seen: Manifest) -> None:
        """The watch has kept `seen` as `key` (called after it kept it): the write, or a
        later spec (generations are ordered, unlike resourceVersions)."""
        with self._lock:
            found = self._written.get(key)
            if found is not None and (
                resource_version(found[0]) == resource_version(seen)
                or _generation(seen) > _generation(found[0])
            ):
                del self._written[key]

    def newest(self, key: Key) -> Manifest | None:
        """The object the operator's last write of `key` answered, while the watch has not
        delivered it (None: plan from the watch)."""
        with self._lock:
            found = self._written.get(key)
        return None if found is None else found[0]

    def overdue(self, key: Key) -> bool:
        """Whether a write of `key` has waited on the watch for over `LAG` seconds: the
        caller reads the API server and tells `read`."""
        with self._lock:
            found = self._written.get(key)
        return found is not None and self._clock() - found[1] > LAG

    def read(self, key: Key, raw: Manifest | None, watched: str | None) -> None:
        """The API server has `key` as `raw` (None: gone) while its watch holds `watched`."""
        with self._lock:
            if raw is None or resource_version(raw) == watched:
                self._written.pop(key, None)
            else:
                self._written[key] = (raw, self._clock())

    def forget(self, key: Key) -> None:
        with self._lock:
            self._written.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._written)


Child = tuple[str, str]
"""(kind, name) of a ModelService's child."""


class Created:
    """Children the operator created that their watch has not delivered yet.

    A reconcile that runs between a create and its watch event (the service's status write,
    or another child's event, queues one) would find the child missing, check its name and
    write it again. Until the watch holds the child, the create's answer stands in for it.
    Whatever the watch holds is at least as new as the create, so it always wins; a child
    not seen within `LAG` seconds (deleted meanwhile, say) is forgotten.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._by_owner: dict[str, dict[Child, tuple[str, float]]] = {}
        """owner uid -> child -> (the create's answer as the informer would keep it,
        serialized: a burst of 1,000 new services holds thousands, when)"""
        self._clock = clock
        self._lock = threading.Lock()

    def created(self, owner: str, answer: Manifest) -> None:
        kept = json.dumps(without_managed_fields(answer), separators=(",", ":"))
        with self._lock:
            now = self._clock()
            for uid in list(self._by_owner):  # owners deleted meanwhile are never read again
                self._expire(uid, now)
            child = (answer["kind"], answer["metadata"]["name"])
            self._by_owner.setdefault(owner, {})[child] = (kept, now)

    def standing_in(self, owner: str, watched: Callable[[str, str], bool]) -> dict[Child, Manifest]:
        """The children of `owner` created and not yet held by their watch (`watched(kind,
        name)`: whether it holds that child), as their creates answered."""
        with self._lock:
            entries = self._by_owner.get(owner, {})
            for child in [c for c in entries if watched(*c)]:
                del entries[child]
            self._expire(owner, self._clock())
            return {child: json.loads(kept) for child, (kept, _) in entries.items()}

    def _expire(self, owner: str, now: float) -> None:
        entries = self._by_owner.get(owner, {})
        for child in [c for c, (_, at) in entries.items() if now - at > LAG]:
            del entries[child]
        if not entries:
            self._by_owner.pop(owner, None)

    def __len__(self) -> int:
        with self._lock:
            return sum(len(entries) for entries in self._by_owner.values())
