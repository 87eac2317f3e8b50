"""What the real-node serving tests share: ModelServices placed on the node, packages put in
the store, the operator's conditions and a KServe v2 request to a pod's address."""

from __future__ import annotations

import json
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from kubernetes import client

from conch.dev.nodeconfig import NODE_LABEL, NODE_NAME, NODE_TAINT
from conch_runtime.compress import CompressionOptions
from conch_runtime.package import PackageRequest, PackageResult, package
from tests.integration.realnode import NodeCluster
from tests.runtime.packaging import OUTPUT_NAMES, example, trained_teacher, validation
from tests.support import GROUP, VERSION, eventually

DENIED = "denied"
"""Paths under /denied/ of the store answer 403, as a store refusing the pod's credentials."""


@dataclass(frozen=True)
class Store:
    """Files under `root` served at `url` (paths under /denied/ refused with 403)."""

    url: str
    root: Path


def mlp_package(directory: Path, version: str, int8: bool = False) -> PackageResult:
    """The packaging tests' MLP as `conch package` writes it (python format)."""
    return package(
        trained_teacher(),
        directory,
        PackageRequest(
            name="mlp",
            version=version,
            example=example(),
            output_names=OUTPUT_NAMES,
            validation=validation(),
            compression=CompressionOptions(int8=True) if int8 else None,
        ),
    )


def modelversion_in_store(result: PackageResult, store: Store) -> dict[str, Any]:
    """The package's ModelVersion, its artifact copied into the store and its URI there."""
    shutil.copyfile(result.artifact, store.root / result.artifact.name)
    mv: dict[str, Any] = yaml.safe_load(result.modelversion.read_text())
    mv["spec"]["source"]["uri"] = f"{store.url}/{result.artifact.name}"
    return mv


def model_service(name: str, modelversion: str, image: str, **spec: Any) -> dict[str, Any]:
    """A ModelService placed on the real node (no GPU), with `spec` merged in."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelService",
        "metadata": {"name": name},
        "spec": {
            "modelVersion": modelversion,
            "resources": {"gpus": 0, "cpu": "250m", "memory": "2Gi"},
            "triton": {"image": image},
            "scheduling": {
                "nodeSelector": {NODE_LABEL[0]: NODE_LABEL[1]},
                "tolerations": [{**NODE_TAINT, "operator": "Equal"}],
            },
            **spec,
        },
    }


def conditions(custom: client.CustomObjectsApi, ns: str, name: str) -> dict[str, dict[str, Any]]:
    obj = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "modelservices", name)
    return {c["type"]: c for c in obj.get("status", {}).get("conditions", [])}


def wait_service_ready(
    custom: client.CustomObjectsApi, ns: str, name: str, log: Path, timeout: float = 240
) -> None:
    eventually(
        lambda: conditions(custom, ns, name).get("Ready", {}).get("status") == "True",
        timeout=timeout,
        what=f"ModelService {ns}/{name} Ready (operator log {log})",
    )


def ready_pods(real: NodeCluster, ns: str, version: str | None = None) -> list[client.V1Pod]:
    """Running pods on the real node whose containers are all ready (of one ModelVersion)."""
    selector = f"serving.conch.dev/version={version}" if version else None
    return [
        p
        for p in real.core.list_namespaced_pod(ns, label_selector=selector).items
        if p.status.phase == "Running"
        and p.spec.node_name == NODE_NAME
        and not p.metadata.deletion_timestamp
        and all(c.ready for c in p.status.container_statuses or [])
    ]


def example_logits(ip: str, model: str, headers: dict[str, str] | None = None) -> torch.Tensor:
    """The `logits` Triton in the pod at `ip` answers for the packaging example's inputs
    (with `headers`, e.g. the endpoint key)."""
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
        f"http://{ip}:8000/v2/models/{model}/infer",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        (logits,) = json.load(response)["outputs"]
    return torch.tensor(logits["data"]).reshape(logits["shape"])
