"""The operator's own writes to ModelServices that their watch has not delivered yet.

A reconcile plans from the watched ModelService, never read from the API server, except
while a write of the operator's own (a status, an acknowledged annotation) is not in the
watch yet: planning from the copy before it would undo what the last reconcile did.
resourceVersions are compared for equality only (the API gives them no order).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

Key = tuple[str, str]
"""(namespace, name)."""


class Unseen:
    def __init__(self) -> None:
        self._versions: dict[Key, str] = {}
        self._lock = threading.Lock()

    def wrote(self, key: Key, written: str, watched: Callable[[], str | None]) -> None:
        """The operator wrote `key`, which is now at `written`; `watched()` is the version its
        watch holds (asked under the lock `delivered` takes: its event may be in already)."""
        with self._lock:
            if watched() != written:
                self._versions[key] = written
            else:
                self._versions.pop(key, None)

    def delivered(self, key: Key, version: str | None) -> None:
        """The watch has kept `key` at `version` (called after it kept it)."""
        with self._lock:
            if version is not None and self._versions.get(key) == version:
                del self._versions[key]

    def pending(self, key: Key) -> bool:
        """Whether a reconcile of `key` must read it from the API server."""
        with self._lock:
            return key in self._versions

    def read(self, key: Key, read: str | None, watched: str | None) -> None:
        """A reconcile read `key` from the API server at `read` (None: gone) while its watch
        held `watched`: when they agree, the watch holds everything written (its event may
        have come before the write's answer, or a later change before the first)."""
        with self._lock:
            if read is None or read == watched:
                self._versions.pop(key, None)

    def forget(self, key: Key) -> None:
        with self._lock:
            self._versions.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._versions)
