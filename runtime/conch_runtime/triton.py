"""Run the real `tritonserver` from the nvidia-pytriton wheel, on loopback only.

The wheel carries the server binary (`pytriton/tritonserver/bin`), its shared libraries
(`nvidia_pytriton.libs`), the Python backend (`backends/python`) and one backend stub per
Python version (`python_backend_stubs/3.X`). To serve Python-backend models on a machine
without a GPU we:

- copy `backends/python` and the stub for the running Python into a private backend
  directory (the backend looks for the stub beside `libtriton_python.so`);
- put the wheel's libraries and this Python's `libpython3.X.so` on LD_LIBRARY_PATH;
- put this environment's `bin` first on PATH (the stub's embedded interpreter finds its
  prefix, and so this environment's site-packages, from `python3` on PATH) and its
  site-packages on PYTHONPATH, so `model.py` imports the same torch as the packager;
- bind HTTP, gRPC and metrics to 127.0.0.1 on free ports.

The server runs in its own process group and is stopped by its pid: SIGTERM, then SIGKILL
of that group if it does not exit in time.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from conch_runtime.tool_errors import ServerError

__all__ = ["TritonDistribution", "TritonServer", "find_distribution", "free_port"]

HOST = "127.0.0.1"
_ERROR_LINE = re.compile(r"^E\d{4} ")
"""glog's error lines: `E1123 18:30:35.887694 ...`."""
_CPU_NOISE = ("CudaDriverHelper has not been initialized",)


@dataclass(frozen=True)
class TritonDistribution:
    """Paths inside the installed nvidia-pytriton wheel."""

    server: Path
    python_backend: Path
    stub: Path
    libs: Path
    caches: Path


def find_distribution() -> TritonDistribution:
    """Locate tritonserver, the Python backend and the stub for this Python, or ServerError."""
    try:
        import pytriton
    except ImportError:
        raise ServerError(
            "nvidia-pytriton is not installed (pip install 'conch[runtime]')"
        ) from None
    root = Path(pytriton.__file__).resolve().parent
    dist = root / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    found = TritonDistribution(
        server=dist / "bin" / "tritonserver",
        python_backend=dist / "backends" / "python",
        stub=dist / "python_backend_stubs" / version / "triton_python_backend_stub",
        libs=root.parent / "nvidia_pytriton.libs",
        caches=dist / "caches",
    )
    for path in (found.server, found.python_backend, found.stub, found.libs):
        if not path.exists():
            raise ServerError(f"the nvidia-pytriton wheel has no {path} (Python {version})")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _environment(dist: TritonDistribution) -> dict[str, str]:
    env = dict(os.environ)
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    paths = [str(dist.libs), libdir, env.get("LD_LIBRARY_PATH", "")]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in paths if p)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    site = sysconfig.get_paths()["purelib"]
    env["PYTHONPATH"] = os.pathsep.join(p for p in (site, env.get("PYTHONPATH", "")) if p)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env.pop(name, None)
    return env


class TritonServer:
    """One tritonserver process serving `repositories`.

    Use as a context manager, or call `start()` and `stop()`. With `explicit=True` models
    are loaded on request (`load(name)`); otherwise every model in the repositories is
    loaded at start and the server is ready only once all of them are.
    """

    def __init__(
        self,
        repositories: Sequence[Path],
        *,
        workdir: Path | None = None,
        explicit: bool = False,
        startup_timeout: float = 120.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.repositories = [Path(r).resolve() for r in repositories]
        self.explicit = explicit
        self.startup_timeout = startup_timeout
        self.extra_args = list(extra_args)
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.gettempdir()) / "conch-triton-unstarted"
        self.process: subprocess.Popen[bytes] | None = None
        self.http_port = self.grpc_port = self.metrics_port = 0
        self.startup_seconds = 0.0

    @property
    def http_url(self) -> str:
        return f"{HOST}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{HOST}:{self.metrics_port}/metrics"

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _backend_dir(self, dist: TritonDistribution) -> Path:
        backends = self.workdir / "backends"
        python = backends / "python"
        if not (python / "triton_python_backend_stub").exists():
            shutil.copytree(
                dist.python_backend,
                python,
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns("__pycache__"),
            )
            shutil.copy2(dist.stub, python / "triton_python_backend_stub")
        return backends

    def _command(self, dist: TritonDistribution) -> list[str]:
        command = [str(dist.server)]
        command += [f"--model-repository={r}" for r in self.repositories]
        command += [
            f"--backend-directory={self._backend_dir(dist)}",
            f"--cache-directory={dist.caches}",
            f"--http-address={HOST}",
            f"--http-port={self.http_port}",
            f"--grpc-address={HOST}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={HOST}",
            f"--metrics-port={self.metrics_port}",
            "--allow-gpu-metrics=false",
            "--disable-auto-complete-config",
            "--exit-on-error=true",
            "--strict-readiness=true",
            "--log-info=true",
        ]
        if self.explicit:
            command.append("--model-control-mode=explicit")
        return command + self.extra_args

    def start(self) -> TritonServer:
        """Start and wait until ready; ServerError (with the log's tail) if it is not."""
        if self.process is not None:
            return self
        dist = find_distribution()
        if self._own_workdir:
            self.workdir = Path(tempfile.mkdtemp(prefix="conch-triton-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = _environment(dist)
        for _ in range(3):  # a free port can be taken between our check and the bind
            self.http_port, self.grpc_port, self.metrics_port = (
                free_port(),
                free_port(),
                free_port(),
            )
            began = time.monotonic()
            with self.log_path.open("wb") as log:
                self.process = subprocess.Popen(
                    self._command(dist),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=self.workdir,
                    start_new_session=True,
                )
            try:
                self._wait_ready()
            except ServerError:
                log_text = self.log()
                self.stop(cleanup=False)
                if "address already in use" in log_text.lower():
                    continue
                raise
            self.startup_seconds = time.monotonic() - began
            return self
        raise ServerError("tritonserver could not bind free ports after 3 tries")

    def _get(self, path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}{path}", timeout=2) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except (urllib.error.URLError, OSError):
            return 0

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(
                    f"tritonserver exited with code {self.process.returncode} while starting:\n"
                    f"{self.log_tail()}"
                )
            if self._get("/v2/health/ready") == 200:
                return
            time.sleep(0.1)
        raise ServerError(
            f"tritonserver not ready after {self.startup_timeout:.0f}s:\n{self.log_tail()}"
        )

    @property
    def log_path(self) -> Path:
        return self.workdir / "tritonserver.log"

    def load(self, name: str, timeout: float = 120.0) -> None:
        """Load (or reload) model `name` from the repositories: explicit mode only."""
        request = urllib.request.Request(
            f"http://{self.http_url}/v2/repository/models/{name}/load", data=b"{}", method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout):
                return
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise ServerError(
                f"loading model {name!r} failed: {detail}\n{self.log_tail()}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ServerError(
                f"loading model {name!r}: no answer from tritonserver: {exc}"
            ) from None

    def model_ready(self, name: str) -> bool:
        return self._get(f"/v2/models/{name}/ready") == 200

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 5) -> str:
        """The server's error lines (CPU-only noise left out) and the last `lines` lines."""
        text = self.log().splitlines()
        errors = [
            line[:1000]
            for line in text
            if _ERROR_LINE.match(line) and not any(noise in line for noise in _CPU_NOISE)
        ]
        tail = [line for line in text[-lines:] if line[:1000] not in errors]
        return "\n".join(errors + tail)

    def stop(self, timeout: float = 30.0, *, cleanup: bool = True) -> None:
        """SIGTERM the server's pid; SIGKILL its process group if it outlives `timeout`."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        if process is not None:
            # The stubs leave with the server; a stray one in our own group does not outlive us.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        if cleanup and self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
