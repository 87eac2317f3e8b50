"""A load loop that always stops: sender threads share one budget of requests and one
deadline, and a watcher refreshes where they send. The sandbox's load generators
(`traffic.Traffic` for Tritons on loopback, `podload.PodLoad` for pods on the real node)
differ only in where a request goes and what they count."""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from typing import Self

REFRESH_SECONDS = 0.3
"""How often the watcher looks again at where requests should go."""


class LoadLoop(ABC):
    """`senders` threads call `send_one` until `max_requests` are spent, `max_seconds`
    have passed, or the `with` block is left; a watcher calls `refresh` meanwhile."""

    def __init__(self, senders: int, max_seconds: float, max_requests: int) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._deadline = time.monotonic() + max_seconds
        self._budget = max_requests
        self._threads = [threading.Thread(target=self._watch, daemon=True)] + [
            threading.Thread(target=self._send, daemon=True) for _ in range(senders)
        ]

    def __enter__(self) -> Self:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)

    @abstractmethod
    def refresh(self) -> None:
        """Look again at where requests go (errors are the subclass's to survive)."""

    @abstractmethod
    def send_one(self) -> None:
        """Send one request and count it (or wait briefly if there is nowhere to send)."""

    def pause(self, seconds: float) -> None:
        """Wait, but no longer than until the loop is stopped."""
        self._stop.wait(seconds)

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(REFRESH_SECONDS)

    def _take(self) -> bool:
        with self._lock:
            if self._budget <= 0 or time.monotonic() > self._deadline:
                return False
            self._budget -= 1
            return True

    def _send(self) -> None:
        while not self._stop.is_set() and self._take():
            self.send_one()
