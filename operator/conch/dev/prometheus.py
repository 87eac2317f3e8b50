"""A real Prometheus (Debian's `prometheus` binary) on loopback, scraping static targets.

Targets are a file_sd file rewritten by `set_targets`, so tests can add the Triton behind a
canary pod while Prometheus runs. Every target carries the labels a ServiceMonitor would
give a serving pod's series: namespace, service, pod and the version label.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from conch.dev.process import free_port, http_ok, spawn, stop_pid, wait_until


@dataclass(frozen=True)
class Target:
    address: str
    """host:port of a Triton metrics endpoint on 127.0.0.1."""
    labels: dict[str, str]


class PrometheusProcess:
    def __init__(self, directory: Path, scrape_interval: str = "1s") -> None:
        self.directory = directory
        self.scrape_interval = scrape_interval
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_targets(self, targets: list[Target]) -> None:
        groups = [{"targets": [t.address], "labels": t.labels} for t in targets]
        staging = self.directory / "targets.json.tmp"
        staging.write_text(json.dumps(groups))
        staging.rename(self.directory / "targets.json")  # atomic: never a half-written file

    def start(self, targets: Sequence[Target] = ()) -> PrometheusProcess:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus is not installed (make system-deps)")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.set_targets(list(targets))
        config = {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": "1s"},
            "scrape_configs": [
                {
                    "job_name": "triton",
                    "file_sd_configs": [
                        {"files": [str(self.directory / "targets.json")], "refresh_interval": "1s"}
                    ],
                }
            ],
        }
        (self.directory / "prometheus.yml").write_text(json.dumps(config))
        self.port = free_port()
        log = self.directory / "prometheus.log"
        self.proc = spawn(
            [
                binary,
                f"--config.file={self.directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
            ],
            log,
        )
        try:
            wait_until("prometheus", lambda: http_ok(f"{self.url}/-/ready"), 30, log, self.proc)
        except TimeoutError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_pid(self.proc.pid, grace=15)
            self.proc = None
