"""Proof that the control plane is real and wired: the scheduler places GPU pods on GPU nodes,
the Deployment controller makes them Available through kwok, and a request no node can meet
stays Pending with the scheduler's own reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from kubernetes import client

from conch.dev.cluster import DEFAULT_NODES, GPU_RESOURCE
from conch.dev.toolchain import Toolchain
from tests.support import eventually

pytestmark = pytest.mark.integration


def gpu_deployment(name: str, gpus: int) -> client.V1Deployment:
    labels = {"app": name}
    container = client.V1Container(
        name="main",
        image="registry.invalid/never-pulled:1",  # kwok runs no containers
        resources=client.V1ResourceRequirements(limits={GPU_RESOURCE: str(gpus)}),
    )
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    containers=[container],
                    tolerations=[client.V1Toleration(key=GPU_RESOURCE, operator="Exists")],
                ),
            ),
        ),
    )


def test_nodes_are_ready_with_gpu_and_cpu_capacity(api: client.ApiClient) -> None:
    nodes = {n.metadata.name: n for n in client.CoreV1Api(api).list_node().items}
    assert set(nodes) == {n.name for n in DEFAULT_NODES}
    for node in nodes.values():
        ready = {c.type: c.status for c in node.status.conditions}["Ready"]
        assert ready == "True", node.metadata.name
        assert all(
            a.address.startswith("127.") for a in node.status.addresses if a.type == "InternalIP"
        )
    gpu = nodes["gpu-a100-0"]
    assert gpu.status.allocatable[GPU_RESOURCE] == "4"
    assert gpu.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-80GB"
    assert GPU_RESOURCE not in nodes["cpu-0"].status.allocatable


def test_gpu_deployment_is_scheduled_onto_a_gpu_node(api: client.ApiClient, namespace: str) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    apps.create_namespaced_deployment(namespace, gpu_deployment("one-gpu", 1))

    def available() -> bool:
        dep = apps.read_namespaced_deployment("one-gpu", namespace)
        conditions = {c.type: c.status for c in dep.status.conditions or []}
        return conditions.get("Available") == "True" and dep.status.ready_replicas == 1

    eventually(available, what="Deployment one-gpu Available")
    (pod,) = core.list_namespaced_pod(namespace, label_selector="app=one-gpu").items
    node = core.read_node(pod.spec.node_name)
    assert node.metadata.labels.get("nvidia.com/gpu.present") == "true"
    assert pod.status.pod_ip.startswith("127.1."), pod.status.pod_ip


def test_more_gpus_than_any_node_stays_pending(api: client.ApiClient, namespace: str) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    apps.create_namespaced_deployment(namespace, gpu_deployment("eight-gpus", 8))

    def unschedulable() -> client.V1PodCondition | None:
        pods = core.list_namespaced_pod(namespace, label_selector="app=eight-gpus").items
        for pod in pods:
            for cond in pod.status.conditions or []:
                if cond.type == "PodScheduled" and cond.status == "False":
                    return cond
        return None

    cond = eventually(unschedulable, what="PodScheduled=False")
    assert cond.reason == "Unschedulable"
    assert f"Insufficient {GPU_RESOURCE}" in cond.message
    (pod,) = core.list_namespaced_pod(namespace, label_selector="app=eight-gpus").items
    assert pod.status.phase == "Pending"
    assert pod.spec.node_name is None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_cli_cluster_up_and_down_leaves_nothing_behind(
    toolchain: Toolchain, tmp_path: Path, kubectl: Callable[..., str]
) -> None:
    state = tmp_path / "cli-cluster"
    conch = [sys.executable, "-m", "conch.cli", "dev", "cluster"]
    up = subprocess.run(
        [*conch, "up", "--dir", str(state)], capture_output=True, text=True, check=True, timeout=180
    )
    kubeconfig = up.stdout.strip()
    assert kubeconfig == str(state / "kubeconfig")
    pids = json.loads((state / "cluster.json").read_text())["pids"]
    try:
        assert set(pids) == {
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kwok",
        }
        nodes = subprocess.run(
            [
                toolchain.binary("kubectl"),
                f"--kubeconfig={kubeconfig}",
                "get",
                "nodes",
                "-l",
                "nvidia.com/gpu.present=true",
                "-o",
                "name",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert "node/gpu-a100-0" in nodes
    finally:
        subprocess.run([*conch, "down", "--dir", str(state)], check=True, timeout=60)
    assert not [name for name, pid in pids.items() if _alive(pid)]
    assert not state.exists()
