"""The real node's machine-wide lock (conch.dev.nodelock) outlives `cluster up`: a holder
process keeps it until the cluster's state file is gone, or its API server has been gone for
the grace period. On a lock file of the test's own, never the machine's."""

from __future__ import annotations

import fcntl
import subprocess
from pathlib import Path

import pytest

from conch.dev import nodelock
from tests.support import eventually


def _free(path: Path) -> bool:
    with path.open("a") as probe:
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


def test_the_holder_keeps_the_lock_until_the_cluster_is_down(tmp_path: Path) -> None:
    lock_path, state = tmp_path / "node.lock", tmp_path / "cluster.json"
    state.write_text("{}")
    apiserver = subprocess.Popen(["sleep", "600"])
    try:
        said: list[str] = []
        holder = nodelock.hand_over(nodelock.acquire(said.append, lock_path), state, apiserver.pid)
        assert said == []  # nobody held it: no waiting
        assert not _free(lock_path)  # `up` has returned (its file is closed): the holder has it
        state.unlink()  # a clean `down` removes the state file last
        eventually(lambda: _free(lock_path), timeout=10, what="the lock freed")
        assert subprocess.run(["kill", "-0", str(holder)], check=False).returncode != 0
    finally:
        apiserver.kill()
        apiserver.wait()


@pytest.mark.parametrize(
    ("state", "alive", "gone_for", "release"),
    [
        (True, True, 0.0, False),  # up
        (False, True, 0.0, True),  # down removed the state file
        (True, False, 5.0, False),  # down is still cleaning the host
        (True, False, nodelock.GRACE_SECONDS + 1, True),  # killed without down, or leftovers
    ],
)
def test_when_the_holder_lets_go(state: bool, alive: bool, gone_for: float, release: bool) -> None:
    assert nodelock.should_release(state, alive, gone_for) is release
