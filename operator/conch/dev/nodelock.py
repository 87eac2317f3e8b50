"""The machine-wide lock of the real node. One real node runs per machine (one bridge, fixed
paths, kubelet's sysctls), so whoever starts one (the real-node test fixture,
`conch dev cluster up --real-node`, hence `make demo`) first takes this lock, and waits while
another holds it instead of failing on a bridge that is still there.

The test fixture holds it in its own process for as long as its node lives. `cluster up`
returns while its node runs and `cluster down` is another process, so `up` hands the lock to
a small holder process (`python -m conch.dev.nodelock`) that keeps the locked file open until
the cluster's state file is gone (a clean `down` removes it last, after the host is cleaned),
or until the cluster's API server has been gone for a grace period (a cluster killed without
`down`, or a `down` that left something behind, frees the machine for the next node, whose
own checks then see what is left).
"""

from __future__ import annotations

import fcntl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from conch.dev.process import alive

LOCK = Path("/tmp/conch-real-node.lock")
GRACE_SECONDS = 30.0
"""How long the holder outlives the cluster's API server when the state file stays."""


def acquire(say: Callable[[str], None] = lambda _: None, path: Path = LOCK) -> IO[str]:
    """Take the lock, waiting (and saying so once) while another real node holds it. The
    lock lasts while the returned file stays open (in this process or a holder)."""
    lock = path.open("a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        say(f"waiting for {path}: another real node runs on this machine")
        fcntl.flock(lock, fcntl.LOCK_EX)
    return lock


def hand_over(lock: IO[str], state_file: Path, apiserver_pid: int) -> int:
    """Give the held lock to a holder process for the cluster whose `state_file` and API
    server are named, close it here, and return the holder's pid."""
    holder = subprocess.Popen(
        [sys.executable, "-m", "conch.dev.nodelock", str(state_file), str(apiserver_pid)],
        pass_fds=(lock.fileno(),),
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    lock.close()
    return holder.pid


def should_release(state_exists: bool, apiserver_alive: bool, gone_for: float) -> bool:
    """The holder's rule: free the machine once the cluster is down, or once its API server
    has been gone for longer than the grace period."""
    return not state_exists or (not apiserver_alive and gone_for > GRACE_SECONDS)


def _hold(state_file: Path, apiserver_pid: int) -> None:
    """The holder's loop (the locked file is an inherited descriptor: exiting frees it)."""
    gone_since: float | None = None
    while True:
        up, now = alive(apiserver_pid), time.monotonic()
        if up:
            gone_since = None
        elif gone_since is None:
            gone_since = now
        gone_for = 0.0 if gone_since is None else now - gone_since
        if should_release(state_file.exists(), up, gone_for):
            return
        time.sleep(1)


if __name__ == "__main__":
    _hold(Path(sys.argv[1]), int(sys.argv[2]))
