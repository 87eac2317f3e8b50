"""Build the control-plane binaries from the Go module proxy, once, into a cache.

`k8s.io/kubernetes` cannot be `go install`ed (its go.mod requires its staging modules at
v0.0.0), so `toolchain/go.mod` is a small wrapper module that requires it and replaces each
staging module with its published v0.X.Y. kwok and helm install cleanly with `go install`.
The cache is keyed by everything that determines the bytes, so an upgrade rebuilds and an
unchanged checkout never does.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from conch.dev import versions

WRAPPER_DIR = Path(__file__).parent / "toolchain"
WRAPPER_BINARIES = {
    "etcd": "go.etcd.io/etcd/server/v3",
    "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
    "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
    "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
    "kubectl": "k8s.io/kubernetes/cmd/kubectl",
}
INSTALLED_BINARIES = {
    "kwok": f"sigs.k8s.io/kwok/cmd/kwok@{versions.KWOK}",
    "helm": f"helm.sh/helm/v3/cmd/helm@{versions.HELM}",
}
KWOK_STAGES = (
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "kustomize/stage/pod/fast/pod-ready.yaml",
    "kustomize/stage/pod/fast/pod-complete.yaml",
    "kustomize/stage/pod/fast/pod-delete.yaml",
)
GATEWAY_API_CRDS = ("config/crd/standard/gateway.networking.k8s.io_httproutes.yaml",)
PROMETHEUS_OPERATOR_CRDS = (
    "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml",
    "example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml",
)


def cache_root() -> Path:
    base = os.environ.get("CONCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "conch"
    )
    return Path(base)


def _kube_ldflags() -> str:
    major, minor = versions.KUBERNETES.lstrip("v").split(".")[:2]
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={versions.KUBERNETES}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
        ]
    return " ".join(flags)


def _helm_ldflags() -> str:
    return f"-s -w -X helm.sh/helm/v3/internal/version.version={versions.HELM}"


def toolchain_key() -> str:
    """A digest of everything that decides the binaries' bytes."""
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "tools.go"):
        digest.update((WRAPPER_DIR / name).read_bytes())
    digest.update(json.dumps([INSTALLED_BINARIES, _kube_ldflags(), _helm_ldflags()]).encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Toolchain:
    """Paths to built binaries and to the third-party manifests the cluster needs."""

    bin_dir: Path
    kwok_stages: Path
    extra_crds: tuple[Path, ...]

    def binary(self, name: str) -> str:
        return str(self.bin_dir / name)


def _go(args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        ["go", *args],
        cwd=cwd,
        env={**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0", **(env or {})},
        check=False,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"go {' '.join(args)} failed:\n{result.stderr[-4000:]}")
    return result.stdout


def module_dir(module: str, version: str) -> Path:
    """Download a module from the Go module proxy and return its source directory."""
    info = json.loads(_go(["mod", "download", "-json", f"{module}@{version}"]))
    return Path(info["Dir"])


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _say(message: str) -> None:
    print(f"conch: {message}", file=sys.stderr, flush=True)


def _go_binary_name(package: str) -> str:
    """The file `go build` writes for a main package (major-version suffixes skipped)."""
    parts = package.split("/")
    return parts[-2] if re.fullmatch(r"v[0-9]+", parts[-1]) else parts[-1]


def _build(target: Path) -> None:
    staging = Path(tempfile.mkdtemp(prefix="build-", dir=target.parent))
    bin_dir = staging / "bin"
    bin_dir.mkdir()
    _say(
        f"building Kubernetes {versions.KUBERNETES} and etcd {versions.ETCD} (once: about 5 minutes on 2 cores)"
    )
    with tempfile.TemporaryDirectory() as out:
        _go(
            [
                "build",
                "-trimpath",
                "-ldflags",
                _kube_ldflags(),
                "-o",
                out + "/",
                *WRAPPER_BINARIES.values(),
            ],
            cwd=WRAPPER_DIR,
        )
        for name, package in WRAPPER_BINARIES.items():
            shutil.move(Path(out) / _go_binary_name(package), bin_dir / name)
    for name, package in INSTALLED_BINARIES.items():
        _say(f"installing {package}")
        ldflags = _helm_ldflags() if name == "helm" else "-s -w"
        _go(["install", "-trimpath", "-ldflags", ldflags, package], env={"GOBIN": str(bin_dir)})

    stages = staging / "kwok-stages.yaml"
    kwok_src = module_dir("sigs.k8s.io/kwok", versions.KWOK)
    stages.write_text("\n---\n".join((kwok_src / s).read_text() for s in KWOK_STAGES))

    crd_dir = staging / "crds"
    crd_dir.mkdir()
    for module, version, paths in (
        ("sigs.k8s.io/gateway-api", versions.GATEWAY_API, GATEWAY_API_CRDS),
        (
            "github.com/prometheus-operator/prometheus-operator",
            versions.PROMETHEUS_OPERATOR,
            PROMETHEUS_OPERATOR_CRDS,
        ),
    ):
        src = module_dir(module, version)
        for rel in paths:
            shutil.copyfile(src / rel, crd_dir / Path(rel).name)
    staging.rename(target)


def ensure_toolchain() -> Toolchain:
    """The built toolchain, building it first if this checkout's pins are not cached yet."""
    root = cache_root() / "toolchain"
    target = root / toolchain_key()
    if not target.exists():
        with _locked(root / ".lock"):
            if not target.exists():
                _build(target)
    return Toolchain(
        bin_dir=target / "bin",
        kwok_stages=target / "kwok-stages.yaml",
        extra_crds=tuple(sorted((target / "crds").glob("*.yaml"))),
    )


NODE_WRAPPER_DIR = WRAPPER_DIR / "node"
"""The kubelet's own wrapper module: same Kubernetes pin and replaces, its own go.sum, so
adding the node never changes the control plane's cache key."""


def write_go_mod() -> None:
    """Regenerate both wrapper go.mod files from versions.py (needs the Go module proxy)."""
    kube = versions.KUBERNETES
    staging_version = "v0." + kube.lstrip("v").split(".", 1)[1]
    mod_file = json.loads(_go(["mod", "download", "-json", f"k8s.io/kubernetes@{kube}"]))["GoMod"]
    staged = [
        line.split()[0]
        for line in Path(mod_file).read_text().splitlines()
        if line.strip().startswith("k8s.io/") and line.split()[-1] == "v0.0.0"
    ]
    replaces = "\n".join(f"\t{m} => {m} {staging_version}" for m in sorted(set(staged)))
    for directory, module, requires in (
        (WRAPPER_DIR, "conch.dev/toolchain", f"go.etcd.io/etcd/server/v3 {versions.ETCD}\n\t"),
        (NODE_WRAPPER_DIR, "conch.dev/toolchain/node", ""),
    ):
        (directory / "go.mod").write_text(
            f"module {module}\n\ngo 1.26.0\n\n"
            f"require (\n\t{requires}k8s.io/kubernetes {kube}\n)\n\n"
            f"replace (\n{replaces}\n)\n"
        )
        (directory / "go.sum").unlink(missing_ok=True)
        _go(["mod", "tidy"], cwd=directory)
