"""Build the real dev node's binaries once, into a cache of their own.

kubelet comes from the node wrapper module (`toolchain/node`: the control plane's Kubernetes
pin and replaces, its own go.sum), built with the control plane's version ldflags.
containerd, the CNI plugins and crictl `go install` cleanly (no replace directives). The
sandbox (pause) image is the Kubernetes module's own `build/pause` C source, linked
statically and packed as an OCI archive by umoci. The key covers only what decides these
bytes, so the control plane's cache is untouched by a node change and vice versa.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from conch.dev import versions
from conch.dev.toolchain import (
    NODE_WRAPPER_DIR,
    _go,
    _kube_ldflags,
    _locked,
    _say,
    cache_root,
    module_dir,
)

CONTAINERD_MODULE = "github.com/containerd/containerd/v2"
CONTAINERD_BINARIES = ("containerd", "containerd-shim-runc-v2", "ctr")
CNI_MODULE = "github.com/containernetworking/plugins"
CNI_PLUGINS = ("plugins/main/bridge", "plugins/ipam/host-local", "plugins/main/loopback")
CRICTL = f"sigs.k8s.io/cri-tools/cmd/crictl@{versions.CRI_TOOLS}"
PAUSE_IMAGE = f"conch.local/pause:{versions.PAUSE}"
"""Never pulled: containerd pins it as the sandbox image after it is imported."""
PAUSE_CFLAGS = ("-Os", "-Wall", "-Werror", "-static", f"-DVERSION=v{versions.PAUSE}-conch")


def _containerd_ldflags() -> str:
    return f"-s -w -X {CONTAINERD_MODULE}/version.Version={versions.CONTAINERD}"


def _recipe() -> list[object]:
    """Everything besides the node wrapper's files that decides the built bytes."""
    return [
        _kube_ldflags(),
        versions.CONTAINERD,
        CONTAINERD_BINARIES,
        _containerd_ldflags(),
        versions.CNI_PLUGINS,
        CNI_PLUGINS,
        CRICTL,
        PAUSE_IMAGE,
        PAUSE_CFLAGS,
    ]


def node_toolchain_key() -> str:
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "tools.go"):
        digest.update((NODE_WRAPPER_DIR / name).read_bytes())
    digest.update(json.dumps(_recipe()).encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class NodeToolchain:
    """Paths to the node's binaries, its CNI plugins and the pause image archive."""

    bin_dir: Path
    cni_bin_dir: Path
    pause_archive: Path
    pause_image: str = PAUSE_IMAGE

    def binary(self, name: str) -> str:
        return str(self.bin_dir / name)


def _run(argv: list[str], cwd: Path | None = None) -> None:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{result.stderr[-4000:]}")


def pause_archive(out: Path, work: Path) -> Path:
    """The pause binary from the Kubernetes module's source, as a one-layer OCI archive."""
    src = module_dir("k8s.io/kubernetes", versions.KUBERNETES) / "build" / "pause"
    tag = re.search(r"^TAG \?= (\S+)$", (src / "Makefile").read_text(), re.M)
    if not tag or tag.group(1) != versions.PAUSE:
        raise RuntimeError(f"build/pause TAG is {tag and tag.group(1)}; set versions.PAUSE to it")
    binary = work / "pause"
    _run(["gcc", *PAUSE_CFLAGS, "-o", str(binary), str(src / "linux" / "pause.c")])
    _run(["strip", str(binary)])
    layout = work / "layout"
    image = f"{layout}:{PAUSE_IMAGE}"
    _run(["umoci", "init", "--layout", str(layout)])
    _run(["umoci", "new", "--image", image])
    _run(["umoci", "insert", "--image", image, str(binary), "/pause"])
    _run(
        [
            "umoci",
            "config",
            "--image",
            image,
            "--config.entrypoint",
            "/pause",
            "--config.user",
            "65535:65535",
        ]
    )
    _run(["umoci", "gc", "--layout", str(layout)])
    _run(["tar", "--sort=name", "--owner=0", "--group=0", "--numeric-owner", "-C", str(layout),
          "-cf", str(out), "."])  # fmt: skip
    return out


def _build(target: Path) -> None:
    for tool in ("gcc", "strip", "umoci"):
        if not shutil.which(tool):
            raise RuntimeError(f"{tool} is not on PATH: run `make system-deps`")
    staging = Path(tempfile.mkdtemp(prefix="build-", dir=target.parent))
    bin_dir, cni_dir = staging / "bin", staging / "cni"
    bin_dir.mkdir()
    cni_dir.mkdir()
    _say(f"building kubelet {versions.KUBERNETES} (once: about 4 minutes on 2 cores)")
    _go(["build", "-trimpath", "-ldflags", _kube_ldflags(), "-o", str(bin_dir / "kubelet"),
         "k8s.io/kubernetes/cmd/kubelet"], cwd=NODE_WRAPPER_DIR)  # fmt: skip
    _say(f"building containerd {versions.CONTAINERD} (once: about 4 minutes on 2 cores)")
    packages = [f"{CONTAINERD_MODULE}/cmd/{b}@{versions.CONTAINERD}" for b in CONTAINERD_BINARIES]
    _go(
        ["install", "-trimpath", "-tags", "no_btrfs", "-ldflags", _containerd_ldflags(), *packages],
        env={"GOBIN": str(bin_dir)},
    )
    _say(f"building CNI plugins {versions.CNI_PLUGINS} and crictl {versions.CRI_TOOLS}")
    plugins = [f"{CNI_MODULE}/{p}@{versions.CNI_PLUGINS}" for p in CNI_PLUGINS]
    _go(["install", "-trimpath", "-ldflags", "-s -w", *plugins], env={"GOBIN": str(cni_dir)})
    _go(["install", "-trimpath", "-ldflags", "-s -w", CRICTL], env={"GOBIN": str(bin_dir)})
    _say("building the pause image")
    with tempfile.TemporaryDirectory() as work:
        pause_archive(staging / "pause.tar", Path(work))
    staging.rename(target)


def ensure_node_toolchain() -> NodeToolchain:
    """The built node binaries, building them first if this checkout's pins are not cached."""
    root = cache_root() / "node"
    target = root / node_toolchain_key()
    if not target.exists():
        with _locked(root / ".lock"):
            if not target.exists():
                _build(target)
    return NodeToolchain(
        bin_dir=target / "bin", cni_bin_dir=target / "cni", pause_archive=target / "pause.tar"
    )


def runc_path() -> str:
    """Debian's runc (the node's OCI runtime), installed by `make system-deps`."""
    found = shutil.which("runc") or ("/usr/sbin/runc" if os.path.exists("/usr/sbin/runc") else "")
    if not found:
        raise RuntimeError("runc is not installed: run `make system-deps`")
    return found
