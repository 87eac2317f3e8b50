"""When a reconcile may plan from the watched ModelService, and when it must read it."""

from __future__ import annotations

import pytest

from conch.unseen import Unseen

KEY = ("ns", "svc")


def test_nothing_written_reads_the_watch() -> None:
    assert not Unseen().pending(KEY)


def test_a_write_is_read_from_the_api_until_the_watch_delivers_it() -> None:
    unseen = Unseen()
    unseen.wrote(KEY, "12", lambda: "10")
    assert unseen.pending(KEY)
    assert not unseen.pending(("ns", "other"))
    unseen.delivered(KEY, "11")  # an older change, delivered late
    assert unseen.pending(KEY)
    unseen.delivered(KEY, "12")
    assert not unseen.pending(KEY)


def test_a_write_the_watch_delivered_before_its_answer_is_not_waited_for() -> None:
    unseen = Unseen()
    unseen.delivered(KEY, "12")
    unseen.wrote(KEY, "12", lambda: "12")
    assert not unseen.pending(KEY)


def test_the_latest_write_is_the_one_waited_for() -> None:
    unseen = Unseen()
    unseen.wrote(KEY, "12", lambda: "10")
    unseen.wrote(KEY, "13", lambda: "10")
    unseen.delivered(KEY, "12")
    assert unseen.pending(KEY)
    unseen.delivered(KEY, "13")
    assert not unseen.pending(KEY)


@pytest.mark.parametrize(
    ("read", "watched", "pending"),
    [
        pytest.param("14", "14", False, id="the watch holds what the API has"),
        pytest.param("14", "10", True, id="the watch is behind"),
        pytest.param(None, "10", False, id="gone"),
    ],
)
def test_a_read_ends_the_wait_when_the_watch_agrees(
    read: str | None, watched: str, pending: bool
) -> None:
    """The write's event may have come, and another change after it, before the write's
    answer: the version waited for is never delivered again, and a read settles it."""
    unseen = Unseen()
    unseen.wrote(KEY, "12", lambda: "10")
    unseen.read(KEY, read, watched)
    assert unseen.pending(KEY) is pending


def test_a_deleted_service_is_forgotten() -> None:
    unseen = Unseen()
    unseen.wrote(KEY, "12", lambda: "10")
    unseen.forget(KEY)
    assert not unseen.pending(KEY) and len(unseen) == 0
