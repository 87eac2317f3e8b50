"""A real S3-compatible store for the sandbox and the tests: Versity's versitygw.

versitygw's go.mod has no replace directives, so a plain `go install module/cmd@version`
builds it, once, into the cache outside the checkout (about 2.5 minutes on 2 cores). It
runs its `posix` backend on a folder of ours and is stopped by pid. It binds 127.0.0.1 for
tests on the host; the sandbox binds it to the real node's bridge address as well, the one
place pods can reach on the host, so `conch push` and the pods' pull meet in one store.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from conch.dev.process import free_port, spawn, stop_pid, wait_until
from conch.dev.toolchain import cache_root
from conch.dev.versions import VERSITYGW

MODULE = "github.com/versity/versitygw"
ACCESS_KEY = "conchtestaccess"
SECRET_KEY = "conchtestsecret-0123456789"
REGION = "us-east-1"


def ensure_versitygw() -> Path:
    """Path to the pinned versitygw binary, building it once (under a lock) if missing."""
    bin_dir = cache_root() / "bin"
    target = bin_dir / f"versitygw-{VERSITYGW}"
    if target.is_file():
        return target
    if shutil.which("go") is None:
        raise RuntimeError("building the S3 server (versitygw) needs the Go toolchain")
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
                    f"-ldflags=-s -w -X main.Version={VERSITYGW}",
                    f"{MODULE}/cmd/versitygw@{VERSITYGW}",
                ],
                env={**os.environ, "GOBIN": gobin, "CGO_ENABLED": "0"},
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise RuntimeError(f"go install versitygw failed:\n{result.stderr[-4000:]}")
            os.replace(Path(gobin) / "versitygw", target)
            print(f"built versitygw {VERSITYGW} in {time.monotonic() - started:.0f}s")
    return target


@dataclass
class S3Server:
    """A running versitygw: where it listens, its root credentials and its process."""

    host: str
    port: int
    access_key: str
    secret_key: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        stop_pid(self.process.pid)


def start_versitygw(binary: Path, workdir: Path, host: str = "127.0.0.1") -> S3Server:
    """Start versitygw's posix backend on `workdir` at a free port of `host`; wait for it."""
    data, sidecar = workdir / "data", workdir / "meta"
    data.mkdir(parents=True, exist_ok=True)
    sidecar.mkdir(exist_ok=True)  # metadata in files, so the data dir needs no xattr support
    port = free_port()
    log = workdir / "versitygw.log"
    argv = [
        str(binary), "--access", ACCESS_KEY, "--secret", SECRET_KEY, "--region", REGION,
        "--port", f"{host}:{port}", "posix", "--sidecar", str(sidecar), str(data),
    ]  # fmt: skip
    process = spawn(argv, log)
    server = S3Server(host, port, ACCESS_KEY, SECRET_KEY, process, log)

    def listening() -> bool:
        try:
            socket.create_connection((host, port), timeout=1).close()
        except OSError:
            return False
        return True

    try:
        wait_until(f"versitygw on {host}:{port}", listening, 30, log, process)
    except BaseException:
        server.stop()
        raise
    return server
