"""Child processes for the dev tools: started in their own session, awaited on an HTTP
health URL, and stopped by pid (the whole process group: SIGTERM, then SIGKILL)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_ok(url: str, ctx: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=ctx) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def spawn(
    argv: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
            cwd=cwd,
        )


def wait_until(
    what: str,
    check: Callable[[], bool],
    timeout: float,
    log: Path | None = None,
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    """Poll `check`; fail (with the log's tail) on timeout or when `proc` exits first."""
    deadline = time.monotonic() + timeout
    while not check():
        exited = proc is not None and proc.poll() is not None
        if exited or time.monotonic() > deadline:
            tail = ""
            if log and log.exists():
                tail = "\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            state = "exited" if exited else f"not ready after {timeout:.0f}s"
            raise TimeoutError(f"{what} {state}{tail}")
        time.sleep(0.1)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True  # not our child (another process started it); it exists
    return finished == 0


def stop_pid(pid: int, sig: signal.Signals = signal.SIGTERM, grace: float = 10) -> None:
    """Signal the process group of `pid`, then SIGKILL it if it outlives `grace`."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    deadline = time.monotonic() + grace
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
    while alive(pid) and time.monotonic() < deadline + 5:
        time.sleep(0.05)
