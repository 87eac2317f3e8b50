"""Serving on the real node (the package's shared node, images and operator):

- a hand-written Triton pod serves a Python-backend model in an enforce=restricted namespace
  with a read-only root; kubelet's readiness probe proves the model is loaded;
- the operator's own Deployments are in test_operator_rollout.py (serving, an int8 package,
  a rollout) and test_pull_failures.py (every pull failure reason).
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from kubernetes import client

from conch.dev.imagebuild import Built
from tests.integration.realnode import NodeCluster, namespace, restricted_pod, wait_ready

ROOT = Path(__file__).resolve().parents[3]


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
