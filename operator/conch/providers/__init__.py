"""Metric providers behind one small interface, chosen by one factory.

A provider answers one PromQL-style query with one number. "No values" (None) is not
"query failed" (`QueryFailed`): the first makes an analysis Inconclusive, the second is an
error the operator retries.
"""

from __future__ import annotations

from typing import Protocol

from conch.providers.errors import QueryFailed, UnknownProvider
from conch.providers.prometheus import Prometheus, Source

__all__ = ["MetricProvider", "QueryFailed", "Source", "UnknownProvider", "create"]


class MetricProvider(Protocol):
    def query(self, expression: str) -> float | None:
        """The scalar value of `expression` now; None when it has no values."""
        ...

    def is_online(self) -> bool: ...


def create(kind: str, source: Source) -> MetricProvider:
    """The provider named `kind`; an unknown name is an error, never a silent fallback."""
    if kind == "prometheus":
        return Prometheus(source)
    raise UnknownProvider(f"unknown metric provider {kind!r} (known: prometheus)")
