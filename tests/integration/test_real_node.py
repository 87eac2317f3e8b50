"""A real kubelet + containerd node beside the kwok nodes: pods really run, on a bridge of
the harness's own, and `down` leaves nothing on the host.

The cluster here is separate from the session's kwok-only cluster, so the kwok tests are not
slowed (tests/integration/realnode.py holds what the real-node modules share).
"""

from __future__ import annotations

import errno
import json
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from conch.dev import hoststate
from conch.dev.nodeconfig import CLOSED_REGISTRY, NODE_LABEL, NODE_NAME, NODE_TAINT, SYSCTLS
from conch.dev.toolchain import Toolchain
from tests.integration.realnode import (
    NodeCluster,
    namespace,
    node_cluster,
    restricted_pod,
    run_pod,
)
from tests.support import eventually


@pytest.fixture(scope="module")
def real(toolchain: Toolchain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeCluster]:
    with node_cluster(toolchain, tmp_path_factory.mktemp("rn")) as nc:
        yield nc


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
    pod = run_pod(real)
    ns = pod.metadata.namespace
    # logs go API server -> kubelet (Hostname `localhost`, client cert): pause writes nothing
    assert real.cluster.kubectl(toolchain, "logs", "-n", ns, "p") == ""
    # anonymous requests to kubelet are refused: it checks client certificates
    url = f"https://127.0.0.1:{real.node.kubelet_port}/healthz"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=5, context=ssl._create_unverified_context())
    assert refused.value.code == 401


def test_restricted_pod_runs_on_the_bridge(real: NodeCluster) -> None:
    pod = run_pod(real)
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


def test_a_missing_image_is_never_pulled_from_outside(real: NodeCluster) -> None:
    """containerd sends every registry to a closed loopback port: the pull fails there."""
    ns = namespace(real)
    pod = restricted_pod("pull", "registry.example.invalid/conch/nothing:1")
    pod["spec"]["containers"][0]["imagePullPolicy"] = "IfNotPresent"  # type: ignore[index]
    real.core.create_namespaced_pod(ns, pod)

    def pull_error() -> str | None:
        statuses = real.core.read_namespaced_pod("pull", ns).status.container_statuses or []
        waiting = statuses[0].state.waiting if statuses else None
        if waiting and waiting.reason in ("ErrImagePull", "ImagePullBackOff") and waiting.message:
            return str(waiting.message)
        return None

    message = eventually(pull_error, timeout=60, what="the pull to fail")
    assert CLOSED_REGISTRY in message, message


def test_down_leaves_nothing_behind(real: NodeCluster) -> None:
    """Runs last: stops the cluster with a pod running and compares the host with before."""
    run_pod(real)
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
