"""Creates sent off the reconcile: one at a time per object; a failed one is left to the
reconcile."""

from __future__ import annotations

import threading

import pytest

from conch.builders.meta import Manifest
from conch.creates import Creates
from conch.errors import ApiError, ConchError, InvalidSpec


def service(name: str) -> Manifest:
    return {"kind": "Service", "metadata": {"namespace": "ns", "name": name}}


class Ended:
    def __init__(self) -> None:
        self.errors: list[ConchError | None] = []
        self.event = threading.Event()

    def __call__(self, error: ConchError | None) -> None:
        self.errors.append(error)
        self.event.set()

    def wait(self) -> None:
        assert self.event.wait(5), "the create never ended"


def test_an_object_already_being_created_is_not_created_twice() -> None:
    release, calls = threading.Event(), []

    def create(obj: Manifest) -> None:
        calls.append(obj["metadata"]["name"])
        release.wait(5)

    creates = Creates(create)
    first, second, other = Ended(), Ended(), Ended()
    creates.submit(service("a"), first)
    creates.submit(service("a"), second)  # while the first is under way: dropped
    creates.submit(service("b"), other)
    assert creates.in_flight(service("a")) and not creates.in_flight(service("c"))
    release.set()
    first.wait()
    other.wait()
    assert sorted(calls) == ["a", "b"] and first.errors == [None] and second.errors == []
    assert not creates.in_flight(service("a"))  # ended before `done` was called
    again = Ended()
    creates.submit(service("a"), again)  # once it ended, a new create goes out
    again.wait()
    assert calls.count("a") == 2
    creates.stop()


@pytest.mark.parametrize(
    ("raised", "kind", "temporary"),
    [
        (InvalidSpec("exceeded quota: count/services=10"), InvalidSpec, False),
        (ApiError("timed out", 504, temporary=True), ApiError, True),
        (RuntimeError("a bug"), ApiError, True),  # never lost: retried with backoff
    ],
)
def test_a_failed_create_is_left_to_the_reconcile_until_written(
    raised: Exception, kind: type[ConchError], temporary: bool
) -> None:
    def create(obj: Manifest) -> None:
        raise raised

    creates = Creates(create)
    ended = Ended()
    creates.submit(service("a"), ended)
    ended.wait()
    [error] = ended.errors
    assert isinstance(error, kind) and error.temporary is temporary
    assert creates.failed(service("a")) and not creates.failed(service("b"))
    creates.written(service("a"))  # the reconcile wrote it itself
    assert not creates.failed(service("a"))
    creates.stop()
