"""Shared by the real-node test modules: a cluster with a real node (one per machine at a
time, so it holds a machine-wide lock), restricted pods for it, and waits on kubelet."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client, config

from conch.dev import hoststate, nodelock
from conch.dev.cluster import Cluster, FakeNode
from conch.dev.node import RealNode
from conch.dev.node_toolchain import NodeToolchain, ensure_node_toolchain
from conch.dev.nodeconfig import NODE_LABEL, NODE_TAINT
from conch.dev.toolchain import Toolchain
from tests.support import eventually


@dataclass
class NodeCluster:
    cluster: Cluster
    node: RealNode
    node_tc: NodeToolchain
    before: hoststate.HostSnapshot
    core: client.CoreV1Api


@contextmanager
def node_cluster(
    toolchain: Toolchain, directory: Path, preload: tuple[Path, ...] = ()
) -> Iterator[NodeCluster]:
    """A control plane with one kwok node and the real node (holding the `preload` image
    archives); stopped on the way out unless a test already stopped it."""
    node_tc = ensure_node_toolchain()
    with nodelock.acquire():  # another engineer's real-node run finishes first
        before = hoststate.snapshot()
        cluster = Cluster(directory)
        cluster.start(toolchain, nodes=(FakeNode("cpu-0"),), real_node=True, preload=preload)
        try:
            node = cluster.real_node
            assert node is not None
            api = config.new_client_from_config(str(cluster.kubeconfig))
            yield NodeCluster(cluster, node, node_tc, before, client.CoreV1Api(api))
        finally:
            if cluster.directory.exists():
                cluster.stop()


def restricted_pod(name: str, image: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {NODE_LABEL[0]: NODE_LABEL[1]},
            "tolerations": [{**NODE_TAINT, "operator": "Equal"}],
            "automountServiceAccountToken": False,
            "dnsPolicy": "Default",  # no cluster DNS here (and pods get an empty resolv.conf)
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


def namespace(real: NodeCluster) -> str:
    """A fresh namespace where PodSecurity enforces `restricted`."""
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
    return ns


def wait_ready(real: NodeCluster, ns: str, name: str, timeout: float = 60) -> client.V1Pod:
    def ready() -> client.V1Pod | None:
        pod = real.core.read_namespaced_pod(name, ns)
        conditions = {c.type: c.status for c in pod.status.conditions or []}
        return pod if conditions.get("Ready") == "True" and pod.status.pod_ip else None

    try:
        pod: client.V1Pod = eventually(
            ready, timeout=timeout, what=f"pod {name} Ready on the real node"
        )
    except AssertionError as timeout_:
        timeout_.add_note(describe_pod(real, ns, name))
        raise
    return pod


def describe_pod(real: NodeCluster, ns: str, name: str) -> str:
    """What a pod that did not get Ready was doing: its containers' states and its Events."""
    pod = real.core.read_namespaced_pod(name, ns)
    states = [
        f"{c.name}: ready={c.ready} restarts={c.restart_count} {c.state} last={c.last_state}"
        for c in pod.status.container_statuses or []
    ]
    events = real.core.list_namespaced_event(ns, field_selector=f"involvedObject.name={name}")
    logs = []
    for c in pod.status.container_statuses or []:
        try:  # the API server asks kubelet, on loopback (a real-node pod only)
            logs.append(
                real.core.read_namespaced_pod_log(name, ns, container=c.name, tail_lines=20)
            )
        except client.ApiException as e:
            logs.append(f"{c.name}: no log ({e.status})")
    return "\n".join(
        [
            f"phase {pod.status.phase}",
            *states,
            *(f"{e.reason}: {e.message}" for e in events.items),
            *logs,
        ]
    )


def run_pod(real: NodeCluster) -> client.V1Pod:
    """A pause pod in an enforce=restricted namespace, waited for until kubelet says Ready."""
    ns = namespace(real)
    real.core.create_namespaced_pod(ns, restricted_pod("p", real.node_tc.pause_image))
    return wait_ready(real, ns, "p")
