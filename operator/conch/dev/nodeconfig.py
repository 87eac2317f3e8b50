"""Pure rendering of the real node's files: where everything lives under its one state
folder, containerd's config and kubelet's config. The settings carry what these VMs need
(no CAP_SYS_RESOURCE, cgroup v1 only) and keep every path of ours under the folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

NODE_NAME = "localhost"
"""kubelet's hostname and so the node's name and its Hostname address: it resolves to
127.0.0.1, where kubelet listens, so the API server reaches kubelet on loopback only."""
NODE_LABEL = ("conch.dev/node", "real")
NODE_TAINT = {"key": "conch.dev/node", "value": "real", "effect": "NoSchedule"}
"""Only pods that ask for the real node (toleration + node selector) land on it."""
FIXED_PATHS = (
    "/var/lib/kubelet/device-plugins",
    "/var/lib/kubelet",
    "/var/log/containers",
    "/var/lib/cni/results",
    "/var/lib/cni",
    "/run/containerd/s",
    "/run/containerd/fifo",
    "/run/containerd",
)
"""Paths kubelet, containerd and CNI use whatever they are configured with (with the parent
folders they create), children first: the order to remove those that were not there before."""
SYSCTLS = ("vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops")
"""What kubelet rewrites when it starts (recorded before, put back after)."""
CLOSED_REGISTRY = "127.0.0.1:9"
SOCKET_PATH_MAX = 104  # containerd refuses a longer unix socket path (sun_path, less its margin)
"""Every registry host resolves here (discard port, nothing listens): no pull leaves."""


@dataclass(frozen=True)
class NodeLayout:
    """Every path of the node, under `root`."""

    root: Path

    @property
    def state_file(self) -> Path:
        return self.root / "node.json"

    @property
    def containerd_config(self) -> Path:
        return self.root / "containerd.toml"

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd.sock"

    def check_socket_paths(self) -> None:
        """Refuse a root too deep for containerd's sockets before anything starts: otherwise
        containerd dies half way up with a message about a path the user never chose."""
        longest = f"{self.containerd_socket}.ttrpc"
        if len(longest) > SOCKET_PATH_MAX:
            raise ValueError(
                f"the node's directory {self.root} is too deep for containerd's unix sockets "
                f"({len(longest)} > {SOCKET_PATH_MAX} characters in {longest}): "
                "use a shorter cluster directory"
            )

    @property
    def containerd_root(self) -> Path:
        return self.root / "containerd"

    @property
    def containerd_state(self) -> Path:
        return self.root / "state"

    @property
    def runc_root(self) -> Path:
        return self.root / "runc"

    @property
    def certs_d(self) -> Path:
        return self.root / "certs.d"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.root / "kubelet.yaml"

    @property
    def kubelet_kubeconfig(self) -> Path:
        return self.root / "kubelet.kubeconfig"

    @property
    def pod_logs(self) -> Path:
        return self.root / "pod-logs"

    @property
    def static_pods(self) -> Path:
        return self.root / "manifests"

    @property
    def resolv_conf(self) -> Path:
        return self.root / "resolv.conf"

    @property
    def opt(self) -> Path:
        return self.root / "opt"


def _q(path: Path | str) -> str:
    text = str(path)
    if "'" in text or "\n" in text:
        raise ValueError(f"unusable path for a TOML literal string: {text!r}")
    return f"'{text}'"


def containerd_toml(layout: NodeLayout, cni_bin_dir: Path, runc: str, sandbox_image: str) -> str:
    """containerd 2.x config (version 4 schema): everything under the layout; the CRI runtime
    never asks for a negative oom score; cgroupfs; pulls go nowhere."""
    return f"""version = 4
root = {_q(layout.containerd_root)}
state = {_q(layout.containerd_state)}
imports = []
disabled_plugins = ['io.containerd.nri.v1.nri', 'io.containerd.image-verifier.v1.bindir',
  'io.containerd.snapshotter.v1.zfs', 'io.containerd.snapshotter.v1.devmapper']

[plugins.'io.containerd.server.v1.grpc']
  address = {_q(layout.containerd_socket)}

[plugins.'io.containerd.server.v1.ttrpc']
  address = {_q(str(layout.containerd_socket) + ".ttrpc")}

[plugins.'io.containerd.internal.v1.opt']
  path = {_q(layout.opt)}

[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = {_q(sandbox_image)}
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = {_q(layout.certs_d)}

[plugins.'io.containerd.transfer.v1.local']
  config_path = {_q(layout.certs_d)}

[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  enable_criu = false
  cdi_spec_dirs = []
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = 'runc'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = {_q(runc)}
        Root = {_q(layout.runc_root)}
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = [{_q(cni_bin_dir)}]
    conf_dir = {_q(layout.cni_conf_dir)}
    max_conf_num = 1

[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
  stream_server_address = '127.0.0.1'
  stream_server_port = '0'
"""


def registry_hosts_toml() -> str:
    """certs.d/_default/hosts.toml: every registry is a closed loopback port."""
    return f"""server = "http://{CLOSED_REGISTRY}"

[host."http://{CLOSED_REGISTRY}"]
  capabilities = ["pull", "resolve"]
"""


def kubelet_config(
    layout: NodeLayout,
    ca_cert: Path,
    serving: tuple[Path, Path],
    port: int,
    healthz_port: int,
) -> dict[str, Any]:
    """KubeletConfiguration: loopback only, client-cert authn + webhook authz, cgroup v1
    with cgroupfs, oomScoreAdj 0, no swap check, eviction and image GC out of the way of a
    busy shared disk, and every path under the layout."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": "127.0.0.1",
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "tlsCertFile": str(serving[0]),
        "tlsPrivateKeyFile": str(serving[1]),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca_cert)},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "failSwapOn": False,
        "oomScoreAdj": 0,
        "podLogsDir": str(layout.pod_logs),
        "staticPodPath": str(layout.static_pods),
        "resolvConf": str(layout.resolv_conf),
        "hairpinMode": "none",
        "serializeImagePulls": False,
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "shutdownGracePeriod": "0s",
        "maxPods": 32,
        "registerWithTaints": [NODE_TAINT],
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "nodeStatusUpdateFrequency": "4s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "20s",
    }


def kubelet_kubeconfig(server: str, ca_cert: Path, client: tuple[Path, Path]) -> dict[str, Any]:
    """kubelet's credentials towards the API server: its node identity (system:node:NAME)."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "conch-dev",
                "cluster": {"server": server, "certificate-authority": str(ca_cert)},
            }
        ],
        "users": [
            {
                "name": "kubelet",
                "user": {"client-certificate": str(client[0]), "client-key": str(client[1])},
            }
        ],
        "contexts": [{"name": "kubelet", "context": {"cluster": "conch-dev", "user": "kubelet"}}],
        "current-context": "kubelet",
    }
