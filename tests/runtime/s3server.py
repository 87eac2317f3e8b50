"""A real S3-compatible server for tests: Versity's versitygw, built from the Go module proxy.

versitygw's go.mod has no replace directives, so a plain `go install module/cmd@version`
builds it. The binary is cached outside the checkout under
`${CONCH_CACHE:-~/.cache/conch}/bin/versitygw-<version>`, so only the first run pays for the
build (about 2.5 minutes on 2 cores, module downloads included). The server runs its `posix`
backend on a temporary directory, bound to 127.0.0.1 only, and is stopped by pid.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support import eventually

VERSITYGW_MODULE = "github.com/versity/versitygw"
VERSITYGW_VERSION = "v1.8.0"
"""The one place the test S3 server's version is pinned."""

ACCESS_KEY = "conchtestaccess"
SECRET_KEY = "conchtestsecret-0123456789"
REGION = "us-east-1"


def cache_bin_dir() -> Path:
    base = os.environ.get("CONCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "conch"
    )
    return Path(base) / "bin"


def ensure_versitygw() -> Path:
    """Path to the pinned versitygw binary, building it once (under a lock) if missing."""
    bin_dir = cache_bin_dir()
    target = bin_dir / f"versitygw-{VERSITYGW_VERSION}"
    if target.is_file():
        return target
    if shutil.which("go") is None:
        raise RuntimeError("building the test S3 server (versitygw) needs the Go toolchain")
    bin_dir.mkdir(parents=True, exist_ok=True)
    with (bin_dir / ".versitygw.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file():  # another process built it while we waited
            return target
        with tempfile.TemporaryDirectory(dir=bin_dir, prefix=".build-") as gobin:
            started = time.monotonic()
            result = subprocess.run(
                [
                    "go",
                    "install",
                    "-trimpath",
                    f"-ldflags=-s -w -X main.Version={VERSITYGW_VERSION}",
                    f"{VERSITYGW_MODULE}/cmd/versitygw@{VERSITYGW_VERSION}",
                ],
                env={**os.environ, "GOBIN": gobin, "CGO_ENABLED": "0"},
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise RuntimeError(f"go install versitygw failed:\n{result.stderr[-4000:]}")
            os.replace(Path(gobin) / "versitygw", target)
            print(f"built versitygw {VERSITYGW_VERSION} in {time.monotonic() - started:.0f}s")
    return target


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class S3Server:
    """A running versitygw: its endpoint, root credentials and process."""

    endpoint: str
    access_key: str
    secret_key: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        """SIGTERM by pid, SIGKILL after 10 s; the server runs in its own session."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def start_versitygw(binary: Path, workdir: Path) -> S3Server:
    """Start versitygw's posix backend on `workdir` at a free 127.0.0.1 port; wait for it."""
    data, sidecar = workdir / "data", workdir / "meta"
    data.mkdir()
    sidecar.mkdir()  # metadata in files, so the data dir needs no xattr support
    port = free_port()
    log = workdir / "versitygw.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(binary),
                "--access",
                ACCESS_KEY,
                "--secret",
                SECRET_KEY,
                "--region",
                REGION,
                "--port",
                f"127.0.0.1:{port}",
                "posix",
                "--sidecar",
                str(sidecar),
                str(data),
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = S3Server(f"http://127.0.0.1:{port}", ACCESS_KEY, SECRET_KEY, process, log)

    def listening() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"versitygw exited with {process.returncode}:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True

    try:
        eventually(listening, timeout=30, what=f"versitygw on 127.0.0.1:{port}")
    except BaseException:
        server.stop()
        raise
    return server
