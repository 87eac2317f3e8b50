"""The endpoint gate (runtime/gate, Go) for tests, benchmarks and image builds: built once
per source digest into the cache, and run as a loopback process beside a Triton."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from conch.dev.process import free_port, http_ok, spawn, stop_pid, wait_until
from conch.dev.toolchain import cache_root

SOURCE = Path(__file__).resolve().parents[3] / "runtime" / "gate"
BINARY = "conch-gate"


def sources(root: Path = SOURCE) -> list[Path]:
    """What the binary is built from (tests excluded)."""
    wanted = [p for p in root.iterdir() if p.name in ("go.mod", "go.sum") or p.suffix == ".go"]
    return sorted(p for p in wanted if not p.name.endswith("_test.go"))


def source_key(root: Path = SOURCE) -> str:
    h = hashlib.sha256()
    for path in sources(root):
        h.update(f"{path.name}\0{path.stat().st_size}\0".encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def build_into(out: Path, root: Path = SOURCE) -> Path:
    """A static linux binary of the gate at `out` (CGO off, no module downloads)."""
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("the gate needs Go (go 1.24 or later) to build")
    env = {**os.environ, "CGO_ENABLED": "0", "GOOS": "linux", "GOFLAGS": "-mod=mod"}
    argv = [go, "build", "-trimpath", "-ldflags=-s -w", "-o", str(out), "."]
    subprocess.run(argv, cwd=root, env=env, check=True, capture_output=True)
    return out


def ensure() -> Path:
    """The gate binary for this checkout's sources, from the cache when built before."""
    target = cache_root() / "gate" / source_key()[:32] / BINARY
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            built = build_into(Path(tmp) / BINARY)
            built.rename(target)
    return target


def write_hashes(path: Path, keys: Mapping[str, str]) -> None:
    """The gate Secret's file for `keys` ({consumer: key}), replaced atomically the way a
    Secret volume is: a new data folder, then the `..data` link swapped to it."""
    folder = path.parent
    data = folder / f"..{os.urandom(4).hex()}"
    data.mkdir()
    consumers = {c: hashlib.sha256(k.encode()).hexdigest() for c, k in keys.items()}
    (data / path.name).write_text(json.dumps({"consumers": consumers}))
    link = folder / "..data_tmp"
    link.unlink(missing_ok=True)
    link.symlink_to(data.name)
    link.rename(folder / "..data")
    if not path.is_symlink():
        path.symlink_to(f"..data/{path.name}")


@dataclass
class Gate:
    """A gate on 127.0.0.1 in front of a Triton's HTTP and gRPC ports."""

    http_upstream: int
    grpc_upstream: int
    hashes: Path
    key_files: tuple[Path, ...] = ()
    log: Path | None = None
    """Where its output goes; default: `gate.log` beside the hashes file's folder."""
    http_port: int = 0
    grpc_port: int = 0
    pid: int | None = None

    def __enter__(self) -> Gate:
        self.http_port, self.grpc_port = free_port(), free_port()
        argv = [
            str(ensure()),
            f"--http-listen=127.0.0.1:{self.http_port}",
            f"--http-upstream=127.0.0.1:{self.http_upstream}",
            f"--grpc-listen=127.0.0.1:{self.grpc_port}",
            f"--grpc-upstream=127.0.0.1:{self.grpc_upstream}",
            f"--hashes={self.hashes}",
            "--reload=100ms",
            *(f"--key-file={k}" for k in self.key_files),
        ]
        self.log = self.log or self.hashes.parent.parent / "gate.log"
        proc = spawn(argv, self.log)
        self.pid = proc.pid
        url = f"http://127.0.0.1:{self.http_port}/v2/health/live"
        wait_until("the gate", lambda: http_ok(url), 30, self.log, proc)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.pid is not None:
            stop_pid(self.pid)
            self.pid = None
