"""Serving on the real node, with the images the images helper builds (runtime, CPU Triton),
imported into containerd once for the module:

- a hand-written Triton pod serves a Python-backend model in an enforce=restricted namespace
  with a read-only root; kubelet's readiness probe proves the model is loaded;
- the operator's own Deployment: the runtime image's init container pulls and verifies the
  artifact from a server on the host's bridge address, Triton serves it, Ready comes from
  kubelet's probes.

Every inference goes to a pod's address on the bridge, checked before it is dialled. The
Triton image is 3 GB (CUDA torch): importing it is most of this module's time.
"""

from __future__ import annotations

import json
import shutil
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml
from kubernetes import client

from conch.dev import imagebuild, netplan
from conch.dev.imagebuild import Built
from conch.dev.nodeconfig import NODE_LABEL, NODE_NAME, NODE_TAINT
from conch.dev.operator import OperatorProcess
from conch.dev.process import free_port, http_ok, spawn, stop_pid, wait_until
from conch.dev.toolchain import Toolchain
from conch_runtime.package import package
from tests.integration.realnode import (
    NodeCluster,
    namespace,
    node_cluster,
    restricted_pod,
    wait_ready,
)
from tests.runtime.packaging import OUTPUT_NAMES, example, trained_teacher, validation
from tests.support import GROUP, VERSION, eventually

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def real(toolchain: Toolchain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeCluster]:
    with node_cluster(toolchain, tmp_path_factory.mktemp("rn-triton")) as nc:
        yield nc


@pytest.fixture(scope="module")
def images(real: NodeCluster) -> dict[str, Built]:
    """The runtime and Triton images (built or cached by the images helper), imported once."""
    built = {b.name: b for b in imagebuild.build(["runtime", "triton"])}
    names = real.cluster.import_images([Path(b.archive) for b in built.values()])
    assert {b.reference for b in built.values()} <= set(names)
    return built


def _triton_pod(image: str) -> dict[str, object]:
    """The sandbox Triton serving the echo model from a ConfigMap, with a readiness probe
    that proves the model is loaded (kubelet dials the pod on the bridge)."""
    pod = restricted_pod("triton", image)
    spec = pod["spec"]
    assert isinstance(spec, dict)
    (container,) = spec["containers"]
    container |= {
        "name": "triton",
        "securityContext": {**container["securityContext"]},
        "command": ["/usr/local/bin/tritonserver"],
        "args": [
            "--model-repository=/models",
            "--model-control-mode=explicit",
            "--load-model=echo",
            "--strict-readiness=true",
            "--http-port=8000",
            "--grpc-port=8001",
            "--metrics-port=8002",
        ],
        "ports": [{"containerPort": 8000, "name": "http"}],
        "readinessProbe": {
            "httpGet": {"path": "/v2/models/echo/ready", "port": 8000},
            "periodSeconds": 1,
            "failureThreshold": 600,
        },
        "resources": {"limits": {"cpu": "1", "memory": "2Gi"}},
        "volumeMounts": [
            {"name": "models", "mountPath": "/models", "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    spec["securityContext"] = {**spec["securityContext"], "runAsUser": 1000, "runAsGroup": 1000}
    spec["volumes"] = [
        {
            "name": "models",
            "configMap": {
                "name": "echo",
                "items": [
                    {"key": "config.pbtxt", "path": "echo/config.pbtxt"},
                    {"key": "model.py", "path": "echo/1/model.py"},
                ],
            },
        },
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
    ]
    return pod


def test_triton_pod_answers_an_inference_on_its_pod_ip(
    real: NodeCluster, images: dict[str, Built]
) -> None:
    """The images helper's CPU Triton image, imported into the node, serves a Python-backend
    model from a real pod; the inference goes to the pod's address on the bridge."""
    triton = images["triton"]
    ns = namespace(real)
    models = ROOT / "operator" / "conch" / "dev" / "models" / "echo"
    real.core.create_namespaced_config_map(
        ns,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="echo"),
            data={
                "config.pbtxt": (models / "config.pbtxt").read_text(),
                "model.py": (models / "1" / "model.py").read_text(),
            },
        ),
    )
    real.core.create_namespaced_pod(ns, _triton_pod(triton.reference))
    pod = wait_ready(real, ns, "triton", timeout=240)
    ip = real.node.dialable(pod.status.pod_ip)
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4.5]}]}
    request = urllib.request.Request(
        f"http://{ip}:8000/v2/models/echo/infer",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.load(response)
    (y,) = answer["outputs"]
    assert (y["name"], y["data"]) == ("y", [10.5])


@pytest.fixture
def artifact_server(real: NodeCluster, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A static HTTP server on the host's bridge address (where pods reach the host, and
    only they): the artifact store of this test. Stopped by pid."""
    root = tmp_path / "store"
    root.mkdir()
    host = str(netplan.bridge_address(real.node.network).ip)
    port = free_port()
    log = tmp_path / "http.log"
    proc = spawn(
        [sys.executable, "-m", "http.server", "--bind", host, "--directory", str(root), str(port)],
        log,
    )
    try:
        wait_until("artifact server", lambda: http_ok(f"http://{host}:{port}/"), 30, log, proc)
        yield f"http://{host}:{port}", root
    finally:
        stop_pid(proc.pid)


def test_operator_serves_a_package_from_a_real_pod(
    real: NodeCluster,
    images: dict[str, Built],
    toolchain: Toolchain,
    artifact_server: tuple[str, Path],
    tmp_path: Path,
) -> None:
    """The operator's own Deployment: the runtime image's init container pulls and verifies
    the artifact over HTTP, Triton serves it, Ready comes from kubelet's probes, and the
    answer on the pod's address matches the model."""
    base_url, store = artifact_server
    result = package(
        trained_teacher(),
        tmp_path / "pkg",
        name="mlp",
        version="1.0.0",
        example=example(),
        output_names=OUTPUT_NAMES,
        validation=validation(),
    )
    shutil.copyfile(result.artifact, store / result.artifact.name)
    mv = yaml.safe_load(result.modelversion.read_text())
    mv["spec"]["source"]["uri"] = f"{base_url}/{result.artifact.name}"
    ns = namespace(real)
    real.cluster.install_crds(toolchain, ROOT / "crds")
    triton_repo = images["triton"].reference.rsplit(":", 1)[0]
    operator = OperatorProcess(
        real.cluster.kubeconfig,
        tmp_path / "operator.log",
        "--all-namespaces",
        f"--allowed-triton-image={triton_repo}",
        f"--allowed-toleration-key={NODE_TAINT['key']}",
        f"--allowed-node-selector-key={NODE_LABEL[0]}",
    ).start()
    try:
        custom = client.CustomObjectsApi(real.core.api_client)
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, "modelversions", mv)
        svc = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelService",
            "metadata": {"name": "mlp"},
            "spec": {
                "modelVersion": mv["metadata"]["name"],
                "resources": {"gpus": 0, "cpu": "1", "memory": "2Gi"},
                "triton": {"image": images["triton"].reference},
                "scheduling": {
                    "nodeSelector": {NODE_LABEL[0]: NODE_LABEL[1]},
                    "tolerations": [{**NODE_TAINT, "operator": "Equal"}],
                },
            },
        }
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, "modelservices", svc)

        def ready() -> bool:
            obj = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "modelservices", "mlp")
            conditions = {
                c["type"]: c["status"] for c in obj.get("status", {}).get("conditions", [])
            }
            return conditions.get("Ready") == "True"

        eventually(ready, timeout=240, what=f"ModelService Ready (operator log {operator.log})")
        (pod,) = [
            p
            for p in real.core.list_namespaced_pod(ns).items
            if p.status.phase == "Running" and p.spec.node_name == NODE_NAME
        ]
        assert all(c.ready for c in pod.status.container_statuses)
        ip = real.node.dialable(pod.status.pod_ip)
        inputs = example()
        body = {
            "inputs": [
                {
                    "name": name,
                    "datatype": "FP32" if name == "features" else "INT64",
                    "shape": list(inputs[name].shape),
                    "data": inputs[name].flatten().tolist(),
                }
                for name in ("features", "category")
            ],
            "outputs": [{"name": "logits"}],
        }
        request = urllib.request.Request(
            f"http://{ip}:8000/v2/models/mlp/infer",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            (logits,) = json.load(response)["outputs"]
    finally:
        operator.stop()
    with torch.no_grad():
        expected = trained_teacher()(inputs["features"], inputs["category"])[0]
    served = torch.tensor(logits["data"]).reshape(logits["shape"])
    assert torch.allclose(served, expected, atol=1e-4), (served, expected)
