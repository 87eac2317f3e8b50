"""A real node beside the kwok nodes: containerd (with Debian's runc and the CNI bridge) and
a kubelet, every path of theirs under the cluster's `node/` folder.

Up: claim the bridge (creating it fails if another dev node holds it), record the sysctls
kubelet rewrites and which fixed paths exist, start containerd, import the pause image,
start kubelet, wait for Ready, put the sysctls back. Down (DESIGN §3 order): workloads,
kubelet, leftover sandboxes, containerd and its shims, mounts under the folder, the bridge,
the kubepods cgroups; then (after the control plane) fixed paths and sysctls. Every step of
down runs even when an earlier one failed or the node was only half started.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from conch.dev import hoststate, imagestore, netplan
from conch.dev import pki as pkimod
from conch.dev.node_toolchain import NodeToolchain, runc_path
from conch.dev.nodeconfig import (
    FIXED_PATHS,
    NODE_LABEL,
    NODE_NAME,
    SYSCTLS,
    NodeLayout,
    containerd_toml,
    kubelet_config,
    kubelet_kubeconfig,
    registry_hosts_toml,
)
from conch.dev.process import alive, free_port, http_ok, spawn, stop_pid, wait_until

BRIDGE = "conch0"
Kubectl = Callable[..., str]


def _run(argv: list[str], timeout: float = 60) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


@dataclass
class RealNode:
    """One kubelet + containerd node, described by `node.json` in its folder."""

    root: Path
    bridge: str = BRIDGE
    subnet: str = ""
    bin_dir: str = ""
    pids: dict[str, int] = field(default_factory=dict)
    sysctls: dict[str, str] = field(default_factory=dict)
    preexisting: list[str] = field(default_factory=list)
    claimed: bool = False
    """Set once this node created the bridge: from then on the machine's kubepods cgroups,
    fixed paths and sysctls are this node's to clean (and before, another node's)."""
    bridge_owned: bool = False
    kubelet_port: int = 0
    healthz_port: int = 0

    @property
    def layout(self) -> NodeLayout:
        return NodeLayout(self.root)

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    def dialable(self, pod_ip: str) -> str:
        """`pod_ip`, after checking it is a pod address on this node's bridge."""
        return netplan.dialable_pod_ip(pod_ip, self.network)

    # -- state ---------------------------------------------------------------------

    def save(self) -> None:
        state = asdict(self)
        state["root"] = str(self.root)
        self.layout.state_file.write_text(json.dumps(state, indent=1))

    @classmethod
    def load(cls, root: Path) -> RealNode | None:
        path = NodeLayout(root).state_file
        if not path.exists():
            return None
        state = json.loads(path.read_text())
        state["root"] = Path(state["root"])
        return cls(**state)

    # -- up ------------------------------------------------------------------------

    def start(
        self,
        tc: NodeToolchain,
        certs: pkimod.Pki,
        server: str,
        kubectl: Kubectl,
        preload: tuple[Path, ...] = (),
    ) -> None:
        """Bring the node up and wait until it is Ready; on failure, the caller's stop()
        cleans up whatever got started (all of it is recorded in node.json first).
        `preload`: image archives the node starts with, from the image store cache
        (conch.dev.imagestore) when a node before it imported the same ones."""
        if os.geteuid() != 0:
            raise PermissionError("a real node needs root (bridge, cgroups, mounts)")
        self.layout.check_socket_paths()
        self.root.mkdir(parents=True, exist_ok=True)
        self.bin_dir = str(tc.bin_dir)
        self.preexisting = [p for p in FIXED_PATHS if os.path.lexists(p)]
        self.sysctls = {key: hoststate.read_sysctl(key) for key in SYSCTLS}
        self.save()
        self._claim_bridge()
        self._write_files(tc, certs, server)
        self._start_with_images(tc, (tc.pause_archive, *preload))
        self._start_kubelet(tc, kubectl)
        self._restore_sysctls()

    def _claim_bridge(self) -> None:
        routes = json.loads(_run(["ip", "-j", "-4", "route", "show", "table", "all"]) or "[]")
        subnet = netplan.pick_subnet(netplan.routed_networks(routes))
        result = subprocess.run(
            ["ip", "link", "add", self.bridge, "type", "bridge"],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"cannot create bridge {self.bridge} ({result.stderr.strip()}): is another "
                "dev cluster with a real node up? `conch dev cluster down` it first"
            )
        self.claimed = self.bridge_owned = True
        self.subnet = str(subnet)
        self.save()
        _run(["ip", "addr", "add", str(netplan.bridge_address(subnet)), "dev", self.bridge])
        _run(["ip", "link", "set", self.bridge, "up"])

    def _write_files(self, tc: NodeToolchain, certs: pkimod.Pki, server: str) -> None:
        lay = self.layout
        for directory in (lay.cni_conf_dir, lay.cni_ipam_dir, lay.pod_logs, lay.static_pods,
                          lay.certs_d / "_default", lay.kubelet_root):  # fmt: skip
            directory.mkdir(parents=True, exist_ok=True)
        lay.resolv_conf.write_text("")  # pods get no name servers: nothing to query
        lay.containerd_config.write_text(
            containerd_toml(lay, tc.cni_bin_dir, runc_path(), tc.pause_image)
        )
        (lay.certs_d / "_default" / "hosts.toml").write_text(registry_hosts_toml())
        conflist = netplan.cni_conflist(self.bridge, self.network, str(lay.cni_ipam_dir))
        (lay.cni_conf_dir / "10-conch.conflist").write_text(json.dumps(conflist, indent=1))
        serving = pkimod.issue(
            certs, self.root / "kubelet-serving", NODE_NAME, server_hosts=(NODE_NAME, "127.0.0.1")
        )
        client = pkimod.issue(
            certs, self.root / "kubelet-client", f"system:node:{NODE_NAME}", "system:nodes"
        )
        lay.kubelet_kubeconfig.write_text(
            yaml.safe_dump(kubelet_kubeconfig(server, certs.ca_cert, client))
        )
        self.kubelet_port, self.healthz_port = free_port(), free_port()
        self.save()
        lay.kubelet_config.write_text(
            yaml.safe_dump(
                kubelet_config(lay, certs.ca_cert, serving, self.kubelet_port, self.healthz_port)
            )
        )

    def _spawn(self, name: str, argv: list[str]) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.root / f"{name}.log"
        proc = spawn(argv, log, cwd=self.root)
        self.pids[name] = proc.pid
        self.save()
        return proc, log

    def _ctr(self, *args: str, timeout: float = 600) -> str:
        ctr = str(Path(self.bin_dir) / "ctr")
        return _run([ctr, "--address", str(self.layout.containerd_socket), *args], timeout)

    def _start_containerd(self, tc: NodeToolchain) -> None:
        proc, log = self._spawn(
            "containerd",
            [tc.binary("containerd"), "--config", str(self.layout.containerd_config)],
        )

        def serving() -> bool:
            if not self.layout.containerd_socket.exists():
                return False
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._ctr("version", timeout=5)
                return True
            return False

        wait_until("containerd", serving, 60, log, proc)

    def _start_with_images(self, tc: NodeToolchain, archives: tuple[Path, ...]) -> None:
        """containerd with `archives` imported: cloned from the saved image store of the same
        archives, or imported and then saved (containerd stopped meanwhile, before kubelet
        runs anything, so the store holds images only)."""
        images = [item for a in archives for item in imagestore.archive_images(a).items()]
        store = imagestore.store_for(imagestore.store_key(images))
        if imagestore.clone(store, self.layout.containerd_root):
            self._start_containerd(tc)
            return
        self._start_containerd(tc)
        self.import_images(list(archives))
        if len(archives) > 1:  # the pause image alone is quicker to import than to save
            self._stop("containerd")
            imagestore.save(self.layout.containerd_root, store)
            self._start_containerd(tc)

    def images(self) -> dict[str, str]:
        """Image name -> manifest digest of what the node's k8s.io namespace holds."""
        out = self._ctr("-n", "k8s.io", "images", "ls")
        rows = [line.split() for line in out.splitlines()[1:]]
        return {row[0]: row[2] for row in rows if len(row) >= 3}

    def import_images(self, archives: list[Path]) -> list[str]:
        """Import OCI (or docker) image archives into the node's k8s.io namespace, where
        kubelet finds them; pods use them by the names the archives carry. An archive
        whose every image is already there (same digest, e.g. preloaded) is skipped."""
        names: list[str] = []
        present = self.images()
        for archive in archives:
            carried: dict[str, str] = {}
            with contextlib.suppress(tarfile.TarError, KeyError, json.JSONDecodeError):
                carried = imagestore.archive_images(archive)
            if not carried or any(present.get(n) != d for n, d in carried.items()):
                self._ctr("-n", "k8s.io", "images", "import", str(archive))
            names += carried
        return names

    def _start_kubelet(self, tc: NodeToolchain, kubectl: Kubectl) -> None:
        lay = self.layout
        proc, log = self._spawn(
            "kubelet",
            [
                tc.binary("kubelet"),
                f"--config={lay.kubelet_config}",
                f"--kubeconfig={lay.kubelet_kubeconfig}",
                f"--root-dir={lay.kubelet_root}",
                f"--cert-dir={self.root / 'kubelet-pki'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={netplan.bridge_address(self.network).ip}",
                f"--node-labels={NODE_LABEL[0]}={NODE_LABEL[1]}",
                "--v=1",
            ],
        )
        healthz = f"http://127.0.0.1:{self.healthz_port}/healthz"
        wait_until("kubelet", lambda: http_ok(healthz), 60, log, proc)
        query = '{.status.conditions[?(@.type=="Ready")].status}'

        def ready() -> bool:
            with contextlib.suppress(RuntimeError):
                return kubectl("get", "node", NODE_NAME, "-o", f"jsonpath={query}") == "True"
            return False

        wait_until(f"node {NODE_NAME} Ready", ready, 90, log, proc)

    def _restore_sysctls(self) -> list[str]:
        errors = []
        for key, value in self.sysctls.items():
            try:
                if hoststate.read_sysctl(key) != value:
                    hoststate.write_sysctl(key, value)
            except OSError as exc:
                errors.append(f"sysctl {key}: {exc}")
        return errors

    # -- down ----------------------------------------------------------------------

    def stop(self, kubectl: Kubectl | None) -> list[str]:
        """Everything up to (not including) the control plane; returns what failed."""
        errors: list[str] = []

        def step(what: str, action: Callable[[], object]) -> None:
            try:
                action()
            except Exception as exc:
                errors.append(f"{what}: {exc}")

        if kubectl is not None and "kubelet" in self.pids:
            step("delete pods", lambda: self._delete_pods(kubectl))
        step("stop kubelet", lambda: self._stop("kubelet"))
        if "containerd" in self.pids and alive(self.pids["containerd"]):
            step("remove sandboxes", self._remove_sandboxes)
        step("stop containerd", lambda: self._stop("containerd"))
        step("stop shims", self._stop_strays)
        step("unmount", self._unmount)
        step("remove bridge", self._remove_bridge)
        if self.claimed:
            step("remove cgroups", self._remove_cgroups)
        return errors

    def clean_host(self) -> list[str]:
        """After the control plane: the fixed paths this node created, and the sysctls."""
        if not self.claimed:
            return []
        errors = []
        for path in FIXED_PATHS:
            if path in self.preexisting or not os.path.lexists(path):
                continue
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
            except OSError as exc:
                errors.append(f"remove {path}: {exc}")
        return errors + self._restore_sysctls()

    def _delete_pods(self, kubectl: Kubectl) -> None:
        kubectl("delete", "pods", "--all-namespaces", f"--field-selector=spec.nodeName={NODE_NAME}",
                "--grace-period=1", "--wait=true", "--timeout=30s")  # fmt: skip

    def _stop(self, name: str) -> None:
        pid = self.pids.pop(name, None)
        if pid is not None:
            stop_pid(pid, grace=15)
            self.save()

    def _remove_sandboxes(self) -> None:
        crictl = str(Path(self.bin_dir) / "crictl")
        endpoint = f"unix://{self.layout.containerd_socket}"
        _run([crictl, "--runtime-endpoint", endpoint, "--image-endpoint", endpoint,
              "--timeout", "30s", "rmp", "--all", "--force"], timeout=90)  # fmt: skip

    def _stop_strays(self) -> None:
        """Shims outlive containerd by design, and their containers with them: end every
        process that names this node's folder, then every process left in kubepods."""
        for pid in hoststate.processes_mentioning(str(self.root)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for cgroup in hoststate.kubepods_cgroups() if self.claimed else []:
            for procs in cgroup.rglob("cgroup.procs"):
                with contextlib.suppress(OSError, ValueError):
                    for pid in map(int, procs.read_text().split()):
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while hoststate.processes_mentioning(str(self.root)) and time.monotonic() < deadline:
            time.sleep(0.1)

    def _unmount(self) -> None:
        failed = []
        for point in hoststate.mounts_under(self.root):
            result = subprocess.run(["umount", "-l", point], capture_output=True, check=False)
            if result.returncode != 0:
                failed.append(point)
        if failed:
            raise RuntimeError(f"could not unmount {', '.join(failed)}")

    def _remove_bridge(self) -> None:
        if not self.bridge_owned:
            return
        for link in hoststate.links():
            if link.get("master") == self.bridge:
                _run(["ip", "link", "del", str(link["ifname"])])
        if any(link["ifname"] == self.bridge for link in hoststate.links()):
            _run(["ip", "link", "del", self.bridge])
        self.bridge_owned = False
        self.save()

    def _remove_cgroups(self) -> None:
        deadline = time.monotonic() + 15
        while True:
            left = []
            for top in hoststate.kubepods_cgroups():
                below = sorted(
                    (p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts)
                )
                for directory in [*reversed(below), top]:
                    try:
                        directory.rmdir()
                    except OSError:
                        left.append(directory)
            if not left:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"cgroups still in use: {', '.join(map(str, left[:5]))}")
            time.sleep(0.2)
