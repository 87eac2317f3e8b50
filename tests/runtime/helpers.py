"""Builders for test artifacts (honest and hostile tar archives) and a loopback HTTP server."""

from __future__ import annotations

import contextlib
import hashlib
import io
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MODEL_TREE: dict[str, bytes] = {
    "mlp/config.pbtxt": b'name: "mlp"\nbackend: "python"\nmax_batch_size: 8\n',
    "mlp/1/model.py": b"import numpy as np\n\nclass TritonPythonModel:\n    pass\n",
    "mlp/1/weights.bin": bytes(range(256)) * 64,
    "mlp/labels.txt": "zéro\nun\n".encode(),
}


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def read_tree(root: Path, *, skip: tuple[str, ...] = (".conch-sha256",)) -> dict[str, bytes]:
    """Every regular file under `root` by relative POSIX path (markers left out)."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in skip
    }


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pack_dir(root: Path, mode: str = "w:gz") -> bytes:
    """A tar (gzip by default) of `root`'s contents, as `tar -C root .` would make."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:  # type: ignore[call-overload]
        tar.add(root, arcname=".")
    return buf.getvalue()


@dataclass
class Member:
    """One raw tar member, for archives no honest tool would write."""

    name: str
    type: bytes = tarfile.REGTYPE
    data: bytes = b""
    linkname: str = ""


def pack_members(members: list[Member], mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:  # type: ignore[call-overload]
        for m in members:
            info = tarfile.TarInfo(m.name)
            info.type = m.type
            info.linkname = m.linkname
            info.mode = 0o755 if m.type == tarfile.DIRTYPE else 0o644
            if m.type in (tarfile.CHRTYPE, tarfile.BLKTYPE):
                info.devmajor, info.devminor = 1, 3
            info.size = len(m.data) if m.type == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(m.data) if m.type == tarfile.REGTYPE else None)
    return buf.getvalue()


def zero_bomb(unpacked: int) -> bytes:
    """A gzip'd tar holding one file of `unpacked` zero bytes (compresses ~1000:1)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=9) as tar:
        info = tarfile.TarInfo("mlp/1/weights.bin")
        info.size = unpacked
        tar.addfile(info, _Zeros(unpacked))
    return buf.getvalue()


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(b), self.left)
        b[:n] = bytes(n)
        self.left -= n
        return n


# -- loopback HTTP server ---------------------------------------------------------------------


@dataclass
class Route:
    """What one path serves: `body`, after answering the `fail_first` statuses in turn."""

    body: bytes = b""
    status: int = 200
    fail_first: list[int] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    token: str | None = None  # required bearer token, if any
    content_length: bool = True  # False: close-delimited body, size unknown up front
    stall: threading.Event | None = None  # send half the body, then wait for this event
    redirect: str | None = None  # answer 302 with this Location instead
    trickle: float | None = None  # send the body one byte per this many seconds


@dataclass
class LoopbackHTTP:
    """A threaded stdlib HTTP server on 127.0.0.1 that records every request it gets."""

    routes: dict[str, Route]
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    url: str = ""

    def count(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)


def _handler(state: LoopbackHTTP) -> type[BaseHTTPRequestHandler]:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet test output
            pass

        def do_GET(self) -> None:
            with lock:
                state.requests.append((self.path, dict(self.headers)))
                route = state.routes.get(self.path)
                status = 404 if route is None else route.status
                if route is not None and route.fail_first:
                    status = route.fail_first.pop(0)
            if (
                route is not None
                and route.token is not None
                and self.headers.get("Authorization") != f"Bearer {route.token}"
            ):
                status = 401
            body = route.body if route is not None and status == 200 else b"nope\n"
            if route is not None and route.redirect is not None and status == 200:
                status, body = 302, b""
            self.send_response(status)
            if status == 302 and route is not None and route.redirect is not None:
                self.send_header("Location", route.redirect)
            for name, value in (route.headers if route else {}).items():
                self.send_header(name, value)
            if route is not None and status == 200 and not route.content_length:
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True
                return
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if route is not None and route.trickle is not None and status == 200:
                with contextlib.suppress(OSError):  # the client gave up: done
                    for i in range(len(body)):
                        self.wfile.write(body[i : i + 1])
                        self.wfile.flush()
                        time.sleep(route.trickle)
                self.close_connection = True
                return
            if route is not None and route.stall is not None and status == 200:
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                route.stall.wait(timeout=60)
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


def serve_http(routes: dict[str, Route], host: str = "127.0.0.1") -> Iterator[LoopbackHTTP]:
    """Generator for a fixture: yields the running server, shuts it down afterwards.

    `host` is a loopback address (127.0.0.2 is a second host on the same machine).
    """
    state = LoopbackHTTP(routes)
    server = ThreadingHTTPServer((host, 0), _handler(state))
    server.daemon_threads = True
    state.url = f"http://{host}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
