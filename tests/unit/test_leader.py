"""The leader election rule as a table."""

from __future__ import annotations

import datetime as dt

import pytest

from conch.leader import LeaseView, Step, next_step

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
TEN = dt.timedelta(seconds=10)


@pytest.mark.parametrize(
    ("lease", "step"),
    [
        (None, "create"),
        (LeaseView("me", NOW - dt.timedelta(hours=1), TEN), "renew"),  # ours, even if late
        (LeaseView("other", NOW - dt.timedelta(seconds=3), TEN), "wait"),
        (LeaseView("other", NOW - TEN, TEN), "take"),  # expired exactly now
        (LeaseView("other", NOW - dt.timedelta(seconds=11), TEN), "take"),
        (LeaseView(None, NOW, TEN), "take"),  # released
        (LeaseView("", NOW, TEN), "take"),
        (LeaseView("other", None, TEN), "take"),  # never renewed
    ],
)
def test_next_step(lease: LeaseView | None, step: Step) -> None:
    assert next_step(lease, "me", NOW) == step
