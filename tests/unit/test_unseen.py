"""Which copy of a ModelService a reconcile plans from: the watched one, or the answer of
the operator's own last write while the watch has not delivered it."""

from __future__ import annotations

from typing import Any

import pytest

from conch.unseen import LAG, Created, Unseen

KEY = ("ns", "svc")


def obj(version: str, generation: int = 1) -> dict[str, Any]:
    return {"metadata": {"resourceVersion": version, "generation": generation}}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_nothing_written_plans_from_the_watch() -> None:
    unseen = Unseen()
    assert unseen.newest(KEY) is None and not unseen.overdue(KEY)


def test_a_write_is_planned_from_until_the_watch_delivers_it() -> None:
    unseen = Unseen()
    unseen.wrote(KEY, obj("12"), lambda: "10")
    assert unseen.newest(KEY) == obj("12")
    assert unseen.newest(("ns", "other")) is None
    unseen.delivered(KEY, obj("11"))  # an older change, delivered late
    assert unseen.newest(KEY) == obj("12")
    unseen.delivered(KEY, obj("12"))
    assert unseen.newest(KEY) is None


def test_a_write_the_watch_delivered_before_its_answer_is_not_waited_for() -> None:
    unseen = Unseen()
    unseen.wrote(KEY, obj("12"), lambda: "12")
    assert unseen.newest(KEY) is None


def test_the_latest_write_is_the_one_waited_for() -> None:
    unseen = Unseen()
    unseen.wrote(KEY, obj("12"), lambda: "10")
    unseen.wrote(KEY, obj("13"), lambda: "10")
    unseen.delivered(KEY, obj("12"))
    assert unseen.newest(KEY) == obj("13")
    unseen.delivered(KEY, obj("13"))
    assert unseen.newest(KEY) is None


def test_a_later_spec_ends_the_wait() -> None:
    """A relist can skip the write: a later generation is newer whatever its version."""
    unseen = Unseen()
    unseen.wrote(KEY, obj("12", generation=3), lambda: "10")
    unseen.delivered(KEY, obj("15", generation=3))  # a status of someone else's: still ours
    assert unseen.newest(KEY) == obj("12", generation=3)
    unseen.delivered(KEY, obj("17", generation=4))
    assert unseen.newest(KEY) is None


@pytest.mark.parametrize(
    ("read", "watched", "waiting"),
    [
        pytest.param(obj("14"), "14", False, id="the watch holds what the API has"),
        pytest.param(obj("14"), "10", True, id="the watch is behind: wait for the read"),
        pytest.param(None, "10", False, id="gone"),
    ],
)
def test_a_write_not_delivered_in_time_is_read(
    read: dict[str, Any] | None, watched: str, waiting: bool
) -> None:
    clock = Clock()
    unseen = Unseen(clock)
    unseen.wrote(KEY, obj("12"), lambda: "10")
    clock.now = LAG - 1
    assert not unseen.overdue(KEY)
    clock.now = LAG + 1
    assert unseen.overdue(KEY)
    unseen.read(KEY, read, watched)
    assert unseen.newest(KEY) == (read if waiting else None)
    assert not unseen.overdue(KEY)  # the read starts a new wait, or ends it


def test_a_deleted_service_is_forgotten() -> None:
    unseen = Unseen()
    unseen.wrote(KEY, obj("12"), lambda: "10")
    unseen.forget(KEY)
    assert unseen.newest(KEY) is None and len(unseen) == 0


# -- children the operator created (`Created`) ------------------------------------------


def child(kind: str, name: str) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": name, "resourceVersion": "5"}}


def test_a_created_child_stands_in_until_its_watch_holds_it() -> None:
    created = Created()
    created.created("uid-a", child("Deployment", "d"))
    created.created("uid-a", child("NetworkPolicy", "n"))
    held: set[tuple[str, str]] = set()

    def watched(kind: str, name: str) -> bool:
        return (kind, name) in held

    assert created.standing_in("uid-a", watched) == {
        ("Deployment", "d"): child("Deployment", "d"),
        ("NetworkPolicy", "n"): child("NetworkPolicy", "n"),
    }
    assert created.standing_in("uid-b", watched) == {}  # another service's children
    held.add(("Deployment", "d"))
    assert list(created.standing_in("uid-a", watched)) == [("NetworkPolicy", "n")]
    held.clear()  # deleted after the watch held it: never stood in for again
    assert list(created.standing_in("uid-a", watched)) == [("NetworkPolicy", "n")]
    assert len(created) == 1


def test_a_created_child_never_seen_is_forgotten_after_the_lag() -> None:
    clock = Clock()
    created = Created(clock)
    created.created("uid-a", child("Deployment", "d"))
    clock.now = LAG - 1
    assert created.standing_in("uid-a", lambda kind, name: False)
    clock.now = LAG + 1
    created.created("uid-b", child("Deployment", "e"))  # sweeps every owner
    assert len(created) == 1
    assert created.standing_in("uid-a", lambda kind, name: False) == {}
