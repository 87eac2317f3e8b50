"""The operator's connection pool keeps every connection it may hold open at once: one
the pool cannot keep is closed, and the next request pays a new TLS handshake."""

from __future__ import annotations

import argparse

import pytest

from conch import operator_main, rest
from conch.controller import FANOUT
from conch.kopf_alone import kopf


def arguments(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    operator_main.add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize(
    "argv",
    [(), ("--workers", "4"), ("-n", "a", "-n", "b", "-n", "c"), ("--workers", "32", "-n", "a")],
)
def test_the_pool_holds_every_watch_worker_and_fanout_thread(argv: tuple[str, ...]) -> None:
    args = arguments(*argv)
    # never dialled: nothing is requested before `start`
    api = rest.Rest(kopf.ConnectionInfo(server="https://127.0.0.1:1"), pool_size=1)
    watched = operator_main.watches(api, args)
    assert operator_main.connections(args) == watched.streams + args.workers * (1 + FANOUT) + 2
    assert watched.streams == (11 if not args.namespace else 10 * len(args.namespace) + 1)
