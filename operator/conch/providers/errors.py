"""Provider errors. A query with no values is not an error: it returns None."""

from __future__ import annotations

from conch.errors import ConchError


class QueryFailed(ConchError):
    """The provider could not answer (unreachable, bad query, server error)."""

    reason = "MetricsUnavailable"
    temporary = True


class UnknownProvider(ConchError):
    reason = "InvalidSpec"
