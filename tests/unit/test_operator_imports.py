"""The operator process never imports the kubernetes client package (about 55 MiB of
model classes): `conch.rest` does its requests and kopf is imported without it."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = """
import sys
import conch.cli
conch.cli.parser()  # `conch operator run` builds the whole command line first
import conch.handlers, conch.operator_main
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {"kubernetes", "pykube"})
print(loaded)
"""


def test_the_operator_does_not_import_the_kubernetes_client() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
