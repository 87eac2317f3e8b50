"""Bounded exponential backoff for transient fetch failures.

Only `SourceUnavailable` is retried: a wrong digest, a 404 or a hostile archive will be just
as wrong on the next try, and retrying them only delays the condition the user needs to see.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from conch_runtime.errors import InvalidArgument, SourceUnavailable

__all__ = ["RetryPolicy", "with_retries"]

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """`attempts` tries in all; the wait before try n+1 is base*factor**(n-1), capped.

    Jitter (up to `jitter` of each delay, subtracted) spreads the retries of many pods that
    failed together. A server's Retry-After hint is honoured up to `max_delay`.
    """

    attempts: int = 5
    base_delay: float = 0.5
    factor: float = 2.0
    max_delay: float = 10.0
    jitter: float = 0.25

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base_delay < 0 or self.max_delay < 0 or self.factor < 1:
            raise InvalidArgument(f"invalid retry policy {self}")
        if not 0 <= self.jitter <= 1:
            raise InvalidArgument(f"retry jitter must be within [0, 1], got {self.jitter}")

    def delay(self, failures: int, hint: float | None = None, rand: float = 0.0) -> float:
        """Seconds to wait after the `failures`-th failed try; `rand` in [0, 1) scales jitter."""
        if hint is not None and hint >= 0:
            return min(hint, self.max_delay)
        raw = min(self.base_delay * self.factor ** (failures - 1), self.max_delay)
        return raw * (1 - self.jitter * rand)


def with_retries(
    attempt: Callable[[], T],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[int, SourceUnavailable, float], None] | None = None,
    give_up_at: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[T, int]:
    """Run `attempt` until it succeeds or fails permanently; return (result, tries used).

    The last `SourceUnavailable` is re-raised once the attempts are spent, or when the next
    try would start after `give_up_at` (a `clock()` time); every other exception passes
    through at once.
    """
    failures = 0
    while True:
        try:
            return attempt(), failures + 1
        except SourceUnavailable as exc:
            failures += 1
            if failures >= policy.attempts:
                exc.message = f"{exc.message} (gave up after {failures} attempts)"
                exc.args = (exc.message,)
                raise
            wait = policy.delay(failures, exc.retry_after, random.random())
            if give_up_at is not None and clock() + wait >= give_up_at:
                exc.message = f"{exc.message} (gave up after {failures} attempt(s): out of time)"
                exc.args = (exc.message,)
                raise
            if on_retry is not None:
                on_retry(failures, exc, wait)
            sleep(wait)
