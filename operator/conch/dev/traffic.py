"""Real serving behind fake pods: a Triton process per version, scraped by Prometheus under
the labels a ServiceMonitor would give the pod, and a bounded load loop that splits
requests between stable and canary by the weight the ModelService reports.

Used by the rollout tests and benchmarks/rollout.py. Everything binds to 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import random
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from conch.dev.loadloop import LoadLoop
from conch.dev.prometheus import PrometheusProcess, Target
from conch.providers.queries import VERSION_LABEL
from conch_runtime.triton import TritonServer

MODELS = Path(__file__).parent / "models"
"""A Python-backend model `echo` that fails CONCH_FAILURE_RATE of requests and sleeps
CONCH_DELAY_MS per call, so a real Triton reports real nv_inference_* series."""
REQUEST = json.dumps(
    {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
).encode()

Split = tuple[str | None, str | None, int]
"""(stable version, canary version, canary weight in percent)."""


class Backends:
    """One real Triton per served version, registered with Prometheus as that version's pod."""

    def __init__(self, prometheus: PrometheusProcess, namespace: str, service: str) -> None:
        self.prometheus = prometheus
        self.namespace = namespace
        self.service = service
        self.servers: dict[str, TritonServer] = {}

    def start(self, version: str, failure_rate: float = 0.0, delay_ms: float = 0.0) -> None:
        env = {"CONCH_FAILURE_RATE": str(failure_rate), "CONCH_DELAY_MS": str(delay_ms)}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)  # the server (and its Python backend) inherit it
        try:
            server = TritonServer(
                [MODELS], extra_args=["--metrics-config=summary_latencies=true"]
            ).start()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        self.servers[version] = server
        self.prometheus.set_targets(
            [
                Target(
                    f"127.0.0.1:{s.metrics_port}",
                    {
                        "namespace": self.namespace,
                        "service": self.service,
                        "pod": f"{self.service}-{v}-0",
                        VERSION_LABEL: v,
                    },
                )
                for v, s in self.servers.items()
            ]
        )

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()


class Traffic(LoadLoop):
    """A load loop bounded in time and count: each request goes to the canary with the
    weight `split()` reports (polled every 0.3 s), else to the stable version."""

    def __init__(
        self,
        backends: Backends,
        split: Callable[[], Split],
        senders: int = 3,
        max_seconds: float = 240,
        max_requests: int = 10_000,
    ) -> None:
        self.backends = backends
        self._split_source = split
        self.split: Split = (None, None, 0)
        self.log: list[tuple[float, str, bool]] = []
        """(monotonic time, version, succeeded) of every request, in completion order."""
        super().__init__(senders, max_seconds, max_requests)

    def count(self, version: str, ok: bool) -> int:
        with self._lock:
            return sum(1 for _, v, good in self.log if v == version and good == ok)

    def refresh(self) -> None:
        self.split = self._split_source()

    def send_one(self) -> None:
        stable, canary, weight = self.split
        version = canary if canary and random.uniform(0, 100) < weight else stable
        server = self.backends.servers.get(version or "")
        if server is None:
            self.pause(0.1)
            return
        url = f"http://{server.http_url}/v2/models/echo/infer"
        request = urllib.request.Request(url, data=REQUEST, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=5):
                ok = True
        except OSError:
            ok = False
        with self._lock:
            self.log.append((time.monotonic(), version or "", ok))
        self.pause(0.02)
