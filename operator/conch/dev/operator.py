"""Run the operator as a child process against a kubeconfig (tests, benchmarks, sandbox)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from conch.dev.cluster import _http_ok, free_port


class OperatorProcess:
    """`conch operator run` on loopback ports, stopped by its pid."""

    def __init__(self, kubeconfig: Path, log: Path, *args: str) -> None:
        self.kubeconfig = kubeconfig
        self.log = log
        self.args = args or ("--all-namespaces",)
        self.metrics_port = 0
        self.health_port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> OperatorProcess:
        self.metrics_port, self.health_port = free_port(), free_port()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "conch.cli",
                    "operator",
                    "run",
                    *self.args,
                    f"--metrics-bind-address=127.0.0.1:{self.metrics_port}",
                    f"--health-bind-address=127.0.0.1:{self.health_port}",
                ],
                env={**os.environ, "KUBECONFIG": str(self.kubeconfig)},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not _http_ok(f"http://127.0.0.1:{self.health_port}/healthz"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"operator did not become healthy:\n{tail}")
            time.sleep(0.1)
        return self

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
