"""Serving on the real node (the package's shared node, images and operator):

- a hand-written Triton pod serves a Python-backend model in an enforce=restricted namespace
  with a read-only root; kubelet's readiness probe proves the model is loaded;
- the operator's own Deployment: the runtime image's init container pulls and verifies the
  artifact from the store on the host's bridge address, Triton serves it, Ready comes from
  kubelet's probes;
- an int8 (torchao) `python`-format package loads and answers in the sandbox's Triton image.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import torch
from kubernetes import client

from conch.dev.imagebuild import Built
from conch.dev.operator import OperatorProcess
from conch_runtime.compress import CompressionOptions
from conch_runtime.package import PackageResult, package
from tests.integration.realnode import NodeCluster, namespace, restricted_pod, wait_ready
from tests.integration.realnode_serving.helpers import (
    Store,
    example_logits,
    model_service,
    modelversion_in_store,
    ready_pods,
    wait_service_ready,
)
from tests.runtime.packaging import OUTPUT_NAMES, example, trained_teacher, validation
from tests.support import GROUP, VERSION

ROOT = Path(__file__).resolve().parents[2]


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


def _serve(
    real: NodeCluster,
    store: Store,
    operator: OperatorProcess,
    triton_image: str,
    result: PackageResult,
) -> torch.Tensor:
    """Apply the package's ModelVersion (artifact in the store) and a ModelService on the
    node; wait for Ready from kubelet's probes; the logits its one pod answers."""
    mv = modelversion_in_store(result, store)
    ns = namespace(real)
    custom = client.CustomObjectsApi(real.core.api_client)
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "modelversions", mv)
    svc = model_service("mlp", mv["metadata"]["name"], triton_image)
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "modelservices", svc)
    wait_service_ready(custom, ns, "mlp", operator.log)
    (pod,) = ready_pods(real, ns)
    return example_logits(real.node.dialable(pod.status.pod_ip), "mlp")


def test_operator_serves_a_package_from_a_real_pod(
    real: NodeCluster,
    images: dict[str, Built],
    operator: OperatorProcess,
    store: Store,
    tmp_path: Path,
) -> None:
    """The operator's own Deployment: the runtime image's init container pulls and verifies
    the artifact over HTTP, Triton serves it, Ready comes from kubelet's probes, and the
    answer on the pod's address matches the model."""
    result = package(
        trained_teacher(),
        tmp_path / "pkg",
        name="mlp",
        version="1.0.0",
        example=example(),
        output_names=OUTPUT_NAMES,
        validation=validation(),
    )
    served = _serve(real, store, operator, images["triton"].reference, result)
    inputs = example()
    with torch.no_grad():
        expected = trained_teacher()(inputs["features"], inputs["category"])[0]
    assert torch.allclose(served, expected, atol=1e-4), (served, expected)


def test_an_int8_package_loads_in_the_sandbox_triton_image(
    real: NodeCluster,
    images: dict[str, Built],
    operator: OperatorProcess,
    store: Store,
    tmp_path: Path,
) -> None:
    """torchao's int8 tensors in an exported program: the image carries torchao, so the
    package loads in a real pod and answers what the package recorded for the same input
    (not the fp32 model's answer: int8 differs from it)."""
    result = package(
        trained_teacher(),
        tmp_path / "pkg",
        name="mlp",
        version="2.0.0",
        example=example(),
        output_names=OUTPUT_NAMES,
        validation=validation(),
        compression=CompressionOptions(int8=True),
    )
    served = _serve(real, store, operator, images["triton"].reference, result)
    program = torch.export.load(str(result.repository / "mlp" / "1" / "model.pt2"))
    inputs = example()
    with torch.no_grad():
        expected = program.module()(inputs["features"], inputs["category"])[0]
    assert torch.allclose(served, expected, atol=1e-4), (served, expected)
