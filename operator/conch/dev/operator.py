"""Run the operator as a child process against a kubeconfig (tests, benchmarks, sandbox)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from conch.dev.process import free_port, http_ok, spawn, stop_pid, wait_until


class OperatorProcess:
    """`conch operator run` on loopback ports, stopped by its pid."""

    def __init__(
        self, kubeconfig: Path, log: Path, *args: str, env: Mapping[str, str] | None = None
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log = log
        self.args = args or ("--all-namespaces",)
        self.env = dict(env or {})
        """Extra environment, e.g. POD_NAMESPACE and POD_NAME for --leader-elect."""
        self.metrics_port = 0
        self.health_port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> OperatorProcess:
        self.metrics_port, self.health_port = free_port(), free_port()
        argv = [
            sys.executable, "-m", "conch.cli", "operator", "run", *self.args,
            f"--metrics-bind-address=127.0.0.1:{self.metrics_port}",
            f"--health-bind-address=127.0.0.1:{self.health_port}",
        ]  # fmt: skip
        env = {**os.environ, **self.env, "KUBECONFIG": str(self.kubeconfig)}
        self.proc = spawn(argv, self.log, env=env)
        try:
            health = f"http://127.0.0.1:{self.health_port}/healthz"
            wait_until("operator", lambda: http_ok(health), timeout, self.log, self.proc)
        except TimeoutError:
            self.stop()
            raise
        return self

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.proc is not None:
            stop_pid(self.proc.pid, sig, grace=15)
            self.proc = None
