"""Run a built image without Docker: `umoci unpack` makes an OCI runtime bundle, `runc`
runs it, the way containerd's shim would on a node.

The unpacked root is cached beside the image's archive and never written to: each run gets
a bundle of its own whose config.json points at that root, read-only, with a tmpfs /tmp
(the serving pods mount an emptyDir there) and the host directories it is given. With
`host_network` the container shares this machine's network namespace, so a server in it
must bind 127.0.0.1 (the caller passes the address flags).
"""

from __future__ import annotations

import copy
import fcntl
import json
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from conch.dev.imagebuild import Built

__all__ = ["Container", "Mount", "bundle", "container_config", "entrypoint", "run"]


@dataclass(frozen=True)
class Mount:
    """A host directory bound into the container."""

    source: Path
    destination: str
    readonly: bool = True


def bundle(built: Built) -> Path:
    """The image unpacked into a runtime bundle (once per image key); its root and the
    config.json that umoci derived from the image config."""
    target = built.directory / "bundle"
    with (built.directory / ".unpack.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "config.json").exists():
            partial = built.directory / "bundle.partial"
            shutil.rmtree(partial, ignore_errors=True)
            tag = built.reference.rsplit(":", 1)[1]
            argv = ["umoci", "unpack", "--image", f"{built.layout}:{tag}", str(partial)]
            subprocess.run(argv, check=True, capture_output=True)
            partial.rename(target)
    return target


def entrypoint(built: Built) -> list[str]:
    """The image config's Entrypoint (read from the layout's manifest)."""
    blobs = Path(built.layout) / "blobs" / "sha256"
    manifest = json.loads((blobs / built.digest.split(":", 1)[1]).read_text())
    config = json.loads((blobs / manifest["config"]["digest"].split(":", 1)[1]).read_text())
    return list(config.get("config", {}).get("Entrypoint") or [])


def container_config(
    image_config: dict[str, Any],
    rootfs: Path,
    *,
    command: list[str] | None = None,
    mounts: tuple[Mount, ...] = (),
    host_network: bool = False,
    user: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """The runtime config of one run: the image's own (user, env, entrypoint) with a
    read-only root, a tmpfs /tmp, the given mounts and, if asked, the host's network.
    `command` replaces the whole argv (entrypoint and cmd); `user` (uid, gid) the image's
    user, as a pod's runAsUser/runAsGroup would."""
    config = copy.deepcopy(image_config)
    config["root"] = {"path": str(rootfs), "readonly": True}
    process = config["process"]
    process["terminal"] = False
    if command is not None:
        process["args"] = command
    if user is not None:
        process["user"] = {"uid": user[0], "gid": user[1]}
    extra = [
        {
            "destination": "/tmp",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "nodev", "mode=1777"],
        }
    ]
    for m in mounts:
        options = ["rbind", "ro" if m.readonly else "rw"]
        extra.append(
            {
                "destination": m.destination,
                "type": "bind",
                "source": str(m.source),
                "options": options,
            }
        )
    config["mounts"] = [
        m
        for m in config.get("mounts", [])
        if m["destination"] not in {"/tmp", *(x.destination for x in mounts)}
    ] + extra
    if host_network:
        linux = config["linux"]
        linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] != "network"]
    return config


class Container:
    """One `runc run` of an image, stopped (`runc kill`, `runc delete`) on exit."""

    def __init__(
        self,
        built: Built,
        *,
        args: list[str] | None = None,
        mounts: tuple[Mount, ...] = (),
        host_network: bool = False,
        user: tuple[int, int] | None = None,
        log: Path | None = None,
    ) -> None:
        source = bundle(built)
        image_config = json.loads((source / "config.json").read_text())
        # As a pod's `args`: they replace the image's Cmd and follow its Entrypoint.
        command = None if args is None else entrypoint(built) + args
        self.config = container_config(
            image_config,
            source / "rootfs",
            command=command,
            mounts=mounts,
            host_network=host_network,
            user=user,
        )
        self.id = f"conch-{built.name}-{uuid.uuid4().hex[:8]}"
        self._dir = Path(tempfile.mkdtemp(prefix="conch-runc-"))
        self.log = log or self._dir / "container.log"
        self.process: subprocess.Popen[bytes] | None = None

    def _runc(self, *argv: str) -> list[str]:
        return ["runc", "--root", str(self._dir / "state"), *argv]

    def start(self) -> Container:
        run_bundle = self._dir / "bundle"
        run_bundle.mkdir()
        (run_bundle / "config.json").write_text(json.dumps(self.config))
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self._runc("run", "--bundle", str(run_bundle), self.id),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def exec(self, argv: list[str], timeout: float = 30) -> tuple[int, str]:
        """Run `argv` inside the running container (its namespaces, its user)."""
        done = subprocess.run(
            self._runc("exec", self.id, *argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return done.returncode, done.stdout + done.stderr

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        """Kill the container's processes and remove its state (runc's own bookkeeping)."""
        if self.process is not None and self.process.poll() is None:
            subprocess.run(self._runc("kill", self.id, "KILL"), capture_output=True, check=False)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        subprocess.run(self._runc("delete", "--force", self.id), capture_output=True, check=False)
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Container:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def run(
    built: Built,
    args: list[str] | None = None,
    *,
    user: tuple[int, int] | None = None,
    mounts: tuple[Mount, ...] = (),
    timeout: float = 120,
) -> tuple[int, str]:
    """Run the image to completion (its entrypoint with `args`); exit code and output."""
    with Container(built, args=args, user=user, mounts=mounts) as container:
        code = container.wait(timeout)
        return code, container.output()
