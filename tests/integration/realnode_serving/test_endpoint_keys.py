"""Endpoint keys on the real node: a ModelService with consumers runs the gate (from the
runtime image) beside Triton in one `restricted` pod; kubelet's probes pass through the
gate without a key, Triton answers only on loopback inside the pod, and on the pod's
bridge address a consumer's key is answered while no key, a wrong key and a revoked key
are refused; the metrics port stays open for scrapes.
"""

from __future__ import annotations

import base64
import urllib.error
import urllib.request

from kubernetes import client

from conch import endpointkey
from conch.dev.imagebuild import Built
from conch.dev.operator import OperatorProcess
from conch.dev.podload import infer_body
from conch_runtime.package import PackageResult
from tests.integration.realnode import NodeCluster, namespace
from tests.integration.realnode_serving.helpers import (
    Store,
    model_service,
    modelversion_in_store,
    ready_pods,
    wait_service_ready,
)
from tests.runtime.packaging import example
from tests.support import GROUP, VERSION, eventually


def _status(ip: str, path: str, key: str | None, body: bytes | None = None) -> int:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers[endpointkey.HEADER] = key
    request = urllib.request.Request(f"http://{ip}{path}", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (urllib.error.URLError, OSError):
        return 0  # nothing listens there


def test_the_gate_admits_consumers_on_the_pods_address(
    real: NodeCluster,
    images: dict[str, Built],
    operator: OperatorProcess,
    store: Store,
    fp32_package: PackageResult,
) -> None:
    result = fp32_package
    mv = modelversion_in_store(result, store)
    ns = namespace(real)
    custom = client.CustomObjectsApi(real.core.api_client)
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "modelversions", mv)
    access = {"consumers": [{"name": "app-a"}, {"name": "app-b"}]}
    svc = model_service("mlp", mv["metadata"]["name"], images["triton"].reference, access=access)
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "modelservices", svc)
    wait_service_ready(custom, ns, "mlp", operator.log)  # kubelet's probes, through the gate

    def key(consumer: str) -> str:
        name = endpointkey.key_secret_name("mlp", consumer)
        return base64.b64decode(real.core.read_namespaced_secret(name, ns).data["key"]).decode()

    (pod,) = ready_pods(real, ns)
    assert [c.name for c in pod.spec.containers] == ["triton", "gate"]
    ip = real.node.dialable(pod.status.pod_ip)
    inputs = example()
    body = infer_body(
        {"features": inputs["features"].numpy(), "category": inputs["category"].numpy()}
    )
    infer = "/v2/models/mlp/infer"
    a, b = key("app-a"), key("app-b")
    assert _status(f"{ip}:8000", infer, a, body) == 200
    assert _status(f"{ip}:8000", infer, b, body) == 200
    assert _status(f"{ip}:8000", infer, None, body) == 401
    assert _status(f"{ip}:8000", infer, "wrong", body) == 401
    assert _status(f"{ip}:8000", "/v2/health/ready", None) == 200
    assert _status(f"{ip}:8002", "/metrics", None) == 200
    assert _status(f"{ip}:{endpointkey.TRITON_HTTP_PORT}", infer, a, body) == 0  # loopback only

    patch = {"spec": {"access": {"consumers": [{"name": "app-a"}]}}}
    custom.patch_namespaced_custom_object(GROUP, VERSION, ns, "modelservices", "mlp", patch)
    # revoked once the kubelet refreshes the pod's Secret volume (its sync, about a minute)
    eventually(
        lambda: _status(f"{ip}:8000", infer, b, body) == 401,
        timeout=180,
        what="app-b's key refused by the gate",
    )
    assert _status(f"{ip}:8000", infer, a, body) == 200
