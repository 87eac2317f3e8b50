"""A real Kubernetes control plane on 127.0.0.1, with kwok's fake GPU and CPU nodes.

etcd -> kube-apiserver -> kube-controller-manager -> kube-scheduler -> kwok, each a child
process in its own session so `stop()` (or `conch dev cluster down` from another process)
can end it by pid. Nothing here ever dials a node or pod address: kwok is told to hand out
addresses inside 127.0.0.0/8 and nothing listens on them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import yaml

from conch.dev import netplan, s3
from conch.dev import pki as pkimod
from conch.dev.node import RealNode
from conch.dev.node_toolchain import NodeToolchain
from conch.dev.nodeconfig import NODE_LABEL, NODE_TAINT
from conch.dev.process import free_port, http_ok, spawn, stop_pid, wait_until
from conch.dev.toolchain import Toolchain, cache_root, ensure_toolchain
from conch.policy import PodPolicy

if TYPE_CHECKING:
    from conch.rest import Rest

SERVICE_CIDR = "10.96.0.0/16"  # virtual ClusterIPs: allocated, never dialled
POD_CIDR = "127.1.0.0/16"
NODE_IP = "127.0.0.1"
GPU_RESOURCE = "nvidia.com/gpu"
STATE_FILE = "cluster.json"
SANDBOX_IMAGES = "conch.dev/sandbox/"
"""Images the sandbox builds and imports into its real node itself (never pulled)."""
SANDBOX_POLICY_ARGS = tuple(
    f"--allowed-triton-image={entry}"
    for entry in (*PodPolicy().allowed_triton_images, SANDBOX_IMAGES)
)
"""The operator's default PodPolicy, plus the sandbox's own Triton images."""
SANDBOX_BUCKET = "conch-sandbox"
"""The S3 bucket the sandbox with a real node serves its artifacts from."""
KWOK_ANNOTATION = "kwok.x-k8s.io/node=fake"
"""kwok manages only nodes carrying it (every FakeNode), never the real node."""


@dataclass(frozen=True)
class FakeNode:
    """A kwok node; `gpus` > 0 makes it look like a node prepared by the NVIDIA GPU Operator."""

    name: str
    gpus: int = 0
    product: str = ""
    gpu_memory_mib: int = 0
    mig: dict[str, int] = field(default_factory=dict)
    cpu: str = "32"
    memory: str = "256Gi"
    pods: int = 110

    def manifest(self, index: int) -> dict[str, Any]:
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "type": "kwok",
        }
        resources = {"cpu": self.cpu, "memory": self.memory, "pods": str(self.pods)}
        taints: list[dict[str, str]] = []
        if self.gpus or self.mig:
            labels |= {
                "nvidia.com/gpu.present": "true",
                "nvidia.com/gpu.product": self.product,
                "nvidia.com/gpu.count": str(self.gpus),
                "nvidia.com/gpu.memory": str(self.gpu_memory_mib),
                "nvidia.com/cuda.driver.major": "580",
                "nvidia.com/mig.capable": "true" if self.mig else "false",
                "feature.node.kubernetes.io/pci-10de.present": "true",
            }
            taints.append({"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"})
        if self.gpus:
            resources[GPU_RESOURCE] = str(self.gpus)
        if self.mig:
            labels["nvidia.com/mig.strategy"] = "mixed"
            resources |= {f"nvidia.com/mig-{p}": str(n) for p, n in self.mig.items()}
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": labels,
                "annotations": {
                    KWOK_ANNOTATION.split("=")[0]: KWOK_ANNOTATION.split("=")[1],
                    "node.alpha.kubernetes.io/ttl": "0",
                },
            },
            "spec": {"taints": taints, "podCIDR": f"127.1.{index}.0/24"},
            "status": {"capacity": resources, "allocatable": resources},
        }


DEFAULT_NODES = (
    FakeNode("gpu-a100-0", gpus=4, product="NVIDIA-A100-SXM4-80GB", gpu_memory_mib=81920),
    FakeNode("gpu-a100-1", gpus=4, product="NVIDIA-A100-SXM4-80GB", gpu_memory_mib=81920),
    FakeNode("gpu-l4-0", gpus=2, product="NVIDIA-L4", gpu_memory_mib=23034),
    FakeNode(
        "gpu-a100-mig-0",
        product="NVIDIA-A100-SXM4-40GB",
        gpu_memory_mib=40960,
        mig={"1g.5gb": 7, "3g.20gb": 2},
    ),
    FakeNode("cpu-0"),
    FakeNode("cpu-1"),
)


@dataclass
class Cluster:
    """A running (or stopped) local control plane, described by files in `directory`."""

    directory: Path
    pids: dict[str, int] = field(default_factory=dict)
    api_port: int = 0
    etcd_url: str = ""
    bin_dir: str = ""
    s3_endpoint: str = ""
    """The S3 store pods reach (bridge address), when the cluster has a real node."""

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    def rest(self, pool_size: int = 16) -> Rest:
        """A `conch.rest` client as the admin user (the operator's client, in tests)."""
        from conch.kopf_alone import kopf
        from conch.rest import Rest

        certs = pkimod.load(self.directory)
        info = kopf.ConnectionInfo(
            server=self.server,
            ca_path=str(certs.ca_cert),
            certificate_path=str(certs.admin_cert),
            private_key_path=str(certs.admin_key),
        )
        return Rest(info, pool_size=pool_size)

    # -- lifecycle ---------------------------------------------------------------

    @property
    def node_directory(self) -> Path:
        return self.directory / "node"

    def start(
        self,
        toolchain: Toolchain | None = None,
        nodes: tuple[FakeNode, ...] = DEFAULT_NODES,
        real_node: bool = False,
        node_toolchain: NodeToolchain | None = None,
        preload: tuple[Path, ...] = (),
    ) -> None:
        """The control plane and the kwok nodes; with `real_node`, also a kubelet +
        containerd node (see conch.dev.node, built binaries unless `node_toolchain` says
        otherwise), waited for until Ready, holding the images of the `preload` archives
        (from the image store cache when the same ones were preloaded before)."""
        tc = toolchain or ensure_toolchain()
        self.bin_dir = str(tc.bin_dir)
        self.directory.mkdir(parents=True, exist_ok=True)
        certs = pkimod.create(self.directory)
        self.api_port = free_port()
        self._write_kubeconfig(certs)
        try:
            self._start_etcd(tc)
            self._start_apiserver(tc, certs)
            self._start_controller_manager(tc, certs)
            self._start_scheduler(tc)
            self._start_kwok(tc)
            self._save()
            self._register_nodes(tc, nodes)
            if real_node:
                self._start_real_node(tc, certs, node_toolchain, preload)
        except BaseException as failure:
            try:
                self.stop()
            except RuntimeError as leftover:  # keep the first failure; say what is left
                failure.add_note(str(leftover))
            raise

    def _start_real_node(
        self,
        tc: Toolchain,
        certs: pkimod.Pki,
        node_tc: NodeToolchain | None,
        preload: tuple[Path, ...],
    ) -> None:
        from conch.dev.node_toolchain import ensure_node_toolchain

        node_tc = node_tc or ensure_node_toolchain()
        node = RealNode(self.node_directory)
        node.start(node_tc, certs, self.server, lambda *args: self.kubectl(tc, *args), preload)
        self._start_s3(str(netplan.bridge_address(node.network).ip))

    def _start_s3(self, host: str) -> None:
        """The S3 store on the bridge address (the one host address pods reach), so
        `conch push` and the pods' pull meet in one store; stopped with the others."""
        server = s3.start_versitygw(s3.ensure_versitygw(), self.directory / "s3", host)
        self.pids["versitygw"] = server.process.pid
        self.s3_endpoint = server.endpoint
        self._save()

    @property
    def real_node(self) -> RealNode | None:
        """The real node, when this cluster has one (read from its state file)."""
        return RealNode.load(self.node_directory)

    def import_images(self, archives: list[Path]) -> list[str]:
        """Import image archives into the real node; returns the image names they carry."""
        node = self.real_node
        if node is None:
            raise RuntimeError("this cluster has no real node (start it with real_node=True)")
        return node.import_images(archives)

    def stop(self, remove: bool = True) -> None:
        """End every process this cluster started (by pid, whole process group) and clean up:
        the real node first, then the control plane, then what the node left on the host."""
        node = self.real_node
        errors: list[str] = []
        if node is not None:
            # nothing may recreate the pods the node drains (a Deployment's ReplicaSet would)
            if (manager := self.pids.pop("kube-controller-manager", None)) is not None:
                stop_pid(manager)
            kubectl = Path(self.bin_dir) / "kubectl"
            errors += node.stop(
                self._raw_kubectl if kubectl.exists() and self.pids.get("kube-apiserver") else None
            )
        pids = list(reversed(self.pids.values()))
        for pid in pids:  # all at once, then wait for each
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
        for pid in pids:
            stop_pid(pid)
        self.pids.clear()
        if node is not None:
            errors += node.clean_host()
        if remove and not errors:
            shutil.rmtree(self.directory, ignore_errors=True)
        if errors:
            self._save()  # no pids left to signal: a later `down` only retries the node
            raise RuntimeError(
                f"the real node left something behind ({self.directory} kept):\n  "
                + "\n  ".join(errors)
            )

    @classmethod
    def load(cls, directory: Path) -> Cluster:
        state = json.loads((directory / STATE_FILE).read_text())
        return cls(
            directory=directory,
            pids=state["pids"],
            api_port=state["apiPort"],
            bin_dir=state.get("binDir", ""),
            s3_endpoint=state.get("s3Endpoint", ""),
        )

    def _save(self) -> None:
        (self.directory / STATE_FILE).write_text(
            json.dumps(
                {
                    "pids": self.pids,
                    "apiPort": self.api_port,
                    "server": self.server,
                    "binDir": self.bin_dir,
                    "s3Endpoint": self.s3_endpoint,
                }
            )
        )

    # -- components --------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> Path:
        log = self.directory / f"{name}.log"
        proc = spawn(argv, log, cwd=self.directory)
        self.pids[name] = proc.pid
        self._save()
        return log

    def _start_etcd(self, tc: Toolchain) -> None:
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        log = self._spawn(
            "etcd",
            [
                tc.binary("etcd"),
                f"--data-dir={self.directory / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=default=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync",
                "--quota-backend-bytes=4294967296",
                "--log-level=warn",
            ],
        )
        wait_until("etcd", lambda: http_ok(f"{self.etcd_url}/health"), 30, log)

    def _start_apiserver(self, tc: Toolchain, certs: pkimod.Pki) -> None:
        log = self._spawn(
            "kube-apiserver",
            [
                tc.binary("kube-apiserver"),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.api_port}",
                f"--cert-dir={self.directory}",
                f"--tls-cert-file={certs.serving_cert}",
                f"--tls-private-key-file={certs.serving_key}",
                f"--client-ca-file={certs.ca_cert}",
                "--authorization-mode=Node,RBAC",
                f"--kubelet-client-certificate={certs.kubelet_client_cert}",
                f"--kubelet-client-key={certs.kubelet_client_key}",
                f"--kubelet-certificate-authority={certs.ca_cert}",
                "--kubelet-preferred-address-types=Hostname",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={certs.sa_pub}",
                f"--service-account-signing-key-file={certs.sa_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--profiling=false",
                "--endpoint-reconciler-type=none",
                "--v=0",
            ],
        )
        ctx = self._ssl_context(certs)
        wait_until("kube-apiserver", lambda: http_ok(f"{self.server}/readyz", ctx), 90, log)

    def _start_controller_manager(self, tc: Toolchain, certs: pkimod.Pki) -> None:
        port = free_port()
        log = self._spawn(
            "kube-controller-manager",
            [
                tc.binary("kube-controller-manager"),
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.directory / 'kcm'}",
                f"--service-account-private-key-file={certs.sa_key}",
                f"--root-ca-file={certs.ca_cert}",
                f"--cluster-signing-cert-file={certs.ca_cert}",
                f"--cluster-signing-key-file={certs.ca_key}",
                "--use-service-account-credentials=true",
                "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller",
                "--concurrent-deployment-syncs=10",
                "--concurrent-replicaset-syncs=10",
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                "--v=0",
            ],
        )
        wait_until(
            "kube-controller-manager",
            lambda: http_ok(f"https://127.0.0.1:{port}/healthz", _insecure()),
            60,
            log,
        )

    def _start_scheduler(self, tc: Toolchain) -> None:
        port = free_port()
        log = self._spawn(
            "kube-scheduler",
            [
                tc.binary("kube-scheduler"),
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.directory / 'scheduler'}",
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                "--v=0",
            ],
        )
        wait_until(
            "kube-scheduler",
            lambda: http_ok(f"https://127.0.0.1:{port}/healthz", _insecure()),
            60,
            log,
        )

    def _start_kwok(self, tc: Toolchain) -> None:
        port = free_port()
        log = self._spawn(
            "kwok",
            [
                tc.binary("kwok"),
                f"--kubeconfig={self.kubeconfig}",
                f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}",
                f"--node-ip={NODE_IP}",
                f"--cidr={POD_CIDR}",
                "--node-lease-duration-seconds=40",
                f"--server-address=127.0.0.1:{port}",
                f"--config={tc.kwok_stages}",
            ],
        )
        wait_until("kwok", lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 30, log)

    def _register_nodes(self, tc: Toolchain, nodes: tuple[FakeNode, ...]) -> None:
        manifest = self.directory / "nodes.yaml"
        manifest.write_text(yaml.safe_dump_all(n.manifest(i) for i, n in enumerate(nodes)))
        self.kubectl(tc, "apply", "-f", str(manifest))
        self.kubectl(tc, "wait", "--for=condition=Ready", "node", "--all", "--timeout=60s")

    def start_operator(self, tc: Toolchain) -> str:
        """Install the CRDs and run the operator (from this checkout) as one of the cluster's
        processes, so `stop()` ends it too. Returns its metrics URL."""
        from conch.api.crd import files
        from conch.dev.operator import OperatorProcess

        crd_dir = self.directory / "crds"
        crd_dir.mkdir(exist_ok=True)
        for name, text in files().items():
            (crd_dir / name).write_text(text)
        self.install_crds(tc, crd_dir, *tc.extra_crds)
        real: list[str] = []
        if self.s3_endpoint:
            from conch.dev import images

            recipes = images.load()[1]
            real = real_node_operator_args(
                self.s3_endpoint, recipes["runtime"].reference, recipes["triton"].reference
            )
        operator = OperatorProcess(
            self.kubeconfig,
            self.directory / "conch-operator.log",
            "--all-namespaces",
            "--allow-file-sources",  # `conch package` writes file:// URIs for local use
            *SANDBOX_POLICY_ARGS,
            *real,
        ).start()
        assert operator.proc is not None
        self.pids["conch-operator"] = operator.proc.pid
        self._save()
        return f"http://127.0.0.1:{operator.metrics_port}/metrics"

    def install_crds(self, tc: Toolchain, *paths: Path, timeout: float = 60) -> None:
        """Apply CRD files and wait until every one is Established."""
        for path in paths:
            self.kubectl(tc, "apply", "--server-side", "-f", str(path))
        names = [
            doc["metadata"]["name"]
            for path in paths
            for file in (sorted(path.glob("*.yaml")) if path.is_dir() else [path])
            for doc in yaml.safe_load_all(file.read_text())
            if doc and doc.get("kind") == "CustomResourceDefinition"
        ]
        query = '{.status.conditions[?(@.type=="Established")].status}'

        def established() -> bool:
            return all(
                self.kubectl(tc, "get", "crd", name, "-o", f"jsonpath={query}") == "True"
                for name in names
            )

        wait_until(f"CRDs {', '.join(names)} Established", established, timeout)

    def kubectl(self, tc: Toolchain, *args: str) -> str:
        return self._kubectl_at(tc.binary("kubectl"), *args)

    def _raw_kubectl(self, *args: str) -> str:
        return self._kubectl_at(str(Path(self.bin_dir) / "kubectl"), *args)

    def _kubectl_at(self, binary: str, *args: str) -> str:
        result = subprocess.run(
            [binary, f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    # -- helpers -----------------------------------------------------------------

    def _ssl_context(self, certs: pkimod.Pki) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(certs.ca_cert))
        ctx.load_cert_chain(str(certs.admin_cert), str(certs.admin_key))
        return ctx

    def _write_kubeconfig(self, certs: pkimod.Pki) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "conch-dev",
                    "cluster": {"server": self.server, "certificate-authority": str(certs.ca_cert)},
                }
            ],
            "users": [
                {
                    "name": "conch-admin",
                    "user": {
                        "client-certificate": str(certs.admin_cert),
                        "client-key": str(certs.admin_key),
                    },
                }
            ],
            "contexts": [
                {"name": "conch-dev", "context": {"cluster": "conch-dev", "user": "conch-admin"}}
            ],
            "current-context": "conch-dev",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))
        self.kubeconfig.chmod(0o600)


def real_node_operator_args(s3_endpoint: str, runtime_image: str, triton_image: str) -> list[str]:
    """Operator flags for a sandbox with a real node: pulls from its S3 store (credentials
    only to that host:port and the sandbox bucket), the runtime image the images recipe
    builds, and placement on the real node. Policy lists replace their defaults once given,
    so the defaults are repeated."""
    defaults = PodPolicy()
    host_port = urlsplit(s3_endpoint).netloc
    triton_repo = triton_image.rsplit(":", 1)[0]
    return [
        f"--s3-endpoint={s3_endpoint}",
        f"--credentials-host={host_port}",
        f"--credentials-host={SANDBOX_BUCKET}",
        f"--runtime-image={runtime_image}",
        f"--allowed-triton-image={triton_repo}",
        *(
            f"--allowed-toleration-key={key}"
            for key in (*defaults.allowed_toleration_keys, NODE_TAINT["key"])
        ),
        *(
            f"--allowed-node-selector-key={key}"
            for key in (*defaults.allowed_node_selector_keys, NODE_LABEL[0])
        ),
    ]


def _insecure() -> ssl.SSLContext:
    """For component /healthz endpoints, which serve self-signed certificates on loopback."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def default_directory(name: str = "dev") -> Path:
    return cache_root() / "clusters" / name
