"""A real kubelet + containerd node beside the kwok nodes: pods really run, on a bridge of
the harness's own, and `down` leaves nothing on the host.

The cluster here is separate from the session's kwok-only cluster, so the kwok tests are not
slowed. Only one real node can exist per machine (one kubepods cgroup tree, one set of fixed
paths), so the fixture holds a machine-wide lock while it runs.
"""

from __future__ import annotations

import errno
import fcntl
import json
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client, config

from conch.dev import hoststate
from conch.dev.cluster import Cluster, FakeNode
from conch.dev.node import RealNode
from conch.dev.node_toolchain import NodeToolchain, ensure_node_toolchain
from conch.dev.nodeconfig import NODE_LABEL, NODE_NAME, NODE_TAINT, SYSCTLS
from conch.dev.toolchain import Toolchain
from tests.support import eventually

LOCK = Path("/tmp/conch-real-node.lock")


@dataclass
class NodeCluster:
    cluster: Cluster
    node: RealNode
    node_tc: NodeToolchain
    before: hoststate.HostSnapshot
    core: client.CoreV1Api


@pytest.fixture(scope="module")
def real(toolchain: Toolchain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeCluster]:
    node_tc = ensure_node_toolchain()
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another engineer's real-node run finishes first
        before = hoststate.snapshot()
        cluster = Cluster(tmp_path_factory.mktemp("rn"))
        cluster.start(toolchain, nodes=(FakeNode("cpu-0"),), real_node=True)
        try:
            node = cluster.real_node
            assert node is not None
            api = config.new_client_from_config(str(cluster.kubeconfig))
            yield NodeCluster(cluster, node, node_tc, before, client.CoreV1Api(api))
        finally:
            if cluster.directory.exists():
                cluster.stop()


def _restricted_pod(name: str, image: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {NODE_LABEL[0]: NODE_LABEL[1]},
            "tolerations": [{**NODE_TAINT, "operator": "Equal"}],
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 1,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 65535,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "pause",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "resources": {"limits": {"cpu": "50m", "memory": "16Mi"}},
                }
            ],
        },
    }


def _run_pod(real: NodeCluster) -> client.V1Pod:
    """A pause pod in an enforce=restricted namespace, waited for until kubelet says Ready."""
    ns = f"rn-{uuid.uuid4().hex[:6]}"
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    real.core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=ns, labels=labels))
    )
    eventually(
        lambda: (
            real.core.list_namespaced_service_account(
                ns, field_selector="metadata.name=default"
            ).items
        ),
        what="default service account",
    )
    real.core.create_namespaced_pod(ns, _restricted_pod("p", real.node_tc.pause_image))

    def ready() -> client.V1Pod | None:
        pod = real.core.read_namespaced_pod("p", ns)
        conditions = {c.type: c.status for c in pod.status.conditions or []}
        return pod if conditions.get("Ready") == "True" and pod.status.pod_ip else None

    pod: client.V1Pod = eventually(ready, timeout=60, what="pod Ready on the real node")
    return pod


def test_node_is_real_and_kwok_leaves_it_alone(real: NodeCluster) -> None:
    node = real.core.read_node(NODE_NAME)
    info = node.status.node_info
    assert info.kubelet_version == "v1.36.3"
    assert info.container_runtime_version.startswith("containerd://2.")
    assert node.metadata.labels[NODE_LABEL[0]] == NODE_LABEL[1]
    assert "kwok.x-k8s.io/node" not in (node.metadata.annotations or {})
    assert {t.key for t in node.spec.taints or []} >= {NODE_TAINT["key"]}
    assert "nvidia.com/gpu" not in (node.status.capacity or {})
    # kwok still runs the fake node beside it
    assert real.core.read_node("cpu-0").metadata.annotations["kwok.x-k8s.io/node"] == "fake"


def test_sysctls_are_put_back_once_ready(real: NodeCluster) -> None:
    assert {k: hoststate.read_sysctl(k) for k in SYSCTLS} == {
        k: real.before.sysctls[k] for k in SYSCTLS
    }
    assert (
        hoststate.read_sysctl("net/ipv4/ip_forward") == real.before.sysctls["net/ipv4/ip_forward"]
    )


def test_api_server_reaches_kubelet_by_hostname_with_a_client_cert(
    real: NodeCluster, toolchain: Toolchain
) -> None:
    pod = _run_pod(real)
    ns = pod.metadata.namespace
    # logs go API server -> kubelet (Hostname `localhost`, client cert): pause writes nothing
    assert real.cluster.kubectl(toolchain, "logs", "-n", ns, "p") == ""
    # anonymous requests to kubelet are refused: it checks client certificates
    url = f"https://127.0.0.1:{real.node.kubelet_port}/healthz"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=5, context=ssl._create_unverified_context())
    assert refused.value.code == 401


def test_restricted_pod_runs_on_the_bridge(real: NodeCluster) -> None:
    pod = _run_pod(real)
    assert pod.spec.node_name == NODE_NAME
    status = pod.status.container_statuses[0]
    assert status.ready and status.state.running is not None
    ip = real.node.dialable(pod.status.pod_ip)  # on conch0's subnet, or this raises
    # the pod's netns: only the bridge subnet is routed, there is no default route
    netns = [m for m in hoststate.mounts_under(real.node.root) if "/netns/" in m]
    assert netns
    routes = []
    for ns in netns:
        out = subprocess.run(
            ["nsenter", f"--net={ns}", "ip", "-j", "-4", "route"],
            capture_output=True,
            text=True,
            check=True,
        )
        routes += json.loads(out.stdout)
    assert routes and all(r["dst"] != "default" for r in routes)
    assert {r["dst"] for r in routes} == {real.node.subnet}
    # the host reaches the pod over the bridge: its kernel answers (no listener: refused)
    with socket.socket() as sock:
        sock.settimeout(5)
        code = sock.connect_ex((ip, 9))
    assert code == errno.ECONNREFUSED


def test_imported_archive_names_are_reported(real: NodeCluster) -> None:
    assert real.cluster.import_images([real.node_tc.pause_archive]) == [real.node_tc.pause_image]


def test_down_leaves_nothing_behind(real: NodeCluster) -> None:
    """Runs last: stops the cluster with a pod running and compares the host with before."""
    _run_pod(real)
    root = str(real.node.root)
    assert hoststate.processes_mentioning(root)
    real.cluster.stop()
    after = hoststate.snapshot()
    assert hoststate.processes_mentioning(root) == {}
    assert hoststate.mounts_under(real.cluster.directory) == []
    ours = ("/run/containerd", "/var/lib/kubelet", "/netns/", root)
    assert {
        m for m in after.mount_points - real.before.mount_points if any(o in m for o in ours)
    } == set()
    assert real.node.bridge not in after.link_names
    assert {n for n in after.link_names - real.before.link_names if n.startswith("veth")} == set()
    assert after.kubepods == real.before.kubepods == frozenset()
    assert after.fixed_paths == real.before.fixed_paths
    assert after.sysctls == real.before.sysctls
    assert not real.cluster.directory.exists()
