"""The toolchain's helm binary, run the way the chart tests and the real-node tests need it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "conch"
KUBE_VERSION = "1.36.3"  # for `helm template`, which has no cluster to ask


class Helm:
    """The toolchain's helm, with its config, cache and data kept in a temporary directory."""

    def __init__(self, binary: str, home: Path, kubeconfig: Path | None = None) -> None:
        self.binary = binary
        self.kubeconfig = kubeconfig
        self.env = {
            **os.environ,
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }
        self.env.pop("KUBECONFIG", None)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [self.binary, *args]
        if self.kubeconfig is not None:
            argv.append(f"--kubeconfig={self.kubeconfig}")
        return subprocess.run(
            argv, capture_output=True, text=True, env=self.env, check=False, timeout=300
        )

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stderr}"
        return result.stdout

    def render(
        self, *args: str, namespace: str = "conch-system", tests: bool = False
    ) -> list[dict[str, Any]]:
        """The chart's objects; the `helm test` hook's only when `tests`."""
        out = self.ok(
            "template",
            "conch",
            str(CHART),
            f"--namespace={namespace}",
            f"--kube-version={KUBE_VERSION}",
            *([] if tests else ["--skip-tests"]),
            *args,
        )
        return [doc for doc in yaml.safe_load_all(out) if doc]
