"""A rollout with both versions as real pods on the real node, and the split the pods
actually receive.

Two replicas of v1, then a change to v2 with one canary step at 50% (`router: replicas`:
one stable and one canary pod behind the Service; analysis off, so the step holds for its
pause). While the step holds, the load loop sends requests to the ready pods the way
kube-proxy would (uniformly over the Service's ready pods), and each pod's Triton counts what
it served: the split is read from Triton's own `nv_inference_request_success` on each pod's
metrics port, not from the load loop's bookkeeping.
"""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path
from typing import Any

from kubernetes import client

from conch.dev.imagebuild import Built
from conch.dev.operator import OperatorProcess
from conch.dev.podload import PodLoad, infer_body
from conch_runtime.package import package
from tests.integration.realnode import NodeCluster, namespace
from tests.integration.realnode_serving.helpers import (
    Store,
    model_service,
    modelversion_in_store,
    ready_pods,
    wait_service_ready,
)
from tests.runtime.packaging import OUTPUT_NAMES, example, trained_teacher, validation
from tests.support import GROUP, VERSION, eventually

REQUESTS = 200
SUCCESS = re.compile(r'^nv_inference_request_success\{model="mlp",version="1"\} (\S+)$', re.M)


def _served(ip: str) -> int:
    """Requests Triton in the pod at `ip` answered, from its metrics endpoint."""
    with urllib.request.urlopen(f"http://{ip}:8002/metrics", timeout=10) as response:
        text = response.read().decode()
    match = SUCCESS.search(text)
    return int(float(match.group(1))) if match else 0


def _status(custom: client.CustomObjectsApi, ns: str) -> dict[str, Any]:
    obj = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "modelservices", "mlp")
    return dict(obj.get("status", {}))


def test_both_versions_serve_from_real_pods_at_the_reported_weight(
    real: NodeCluster,
    images: dict[str, Built],
    operator: OperatorProcess,
    store: Store,
    tmp_path: Path,
) -> None:
    versions = []
    for version in ("1.0.0", "2.0.0"):
        result = package(
            trained_teacher(),
            tmp_path / version,
            name="mlp",
            version=version,
            example=example(),
            output_names=OUTPUT_NAMES,
            validation=validation(),
        )
        versions.append(modelversion_in_store(result, store))
    ns = namespace(real)
    custom = client.CustomObjectsApi(real.core.api_client)
    for mv in versions:
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, "modelversions", mv)
    v1, v2 = (mv["metadata"]["name"] for mv in versions)
    rollout = {"steps": [{"weight": 50, "pause": "10m"}], "analysis": {"enabled": False}}
    image = images["triton"].reference
    svc = model_service("mlp", v1, image, replicas=2, rollout=rollout)
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "modelservices", svc)
    wait_service_ready(custom, ns, "mlp", operator.log)
    patch = {"spec": {"modelVersion": v2}}
    custom.patch_namespaced_custom_object(GROUP, VERSION, ns, "modelservices", "mlp", patch)

    def at_step() -> dict[str, Any] | None:
        status = _status(custom, ns)
        canary = status.get("canary") or {}
        pods = {p.metadata.labels["serving.conch.dev/version"] for p in ready_pods(real, ns)}
        both = canary.get("weight") == 50 and pods == {v1, v2}
        return status if both and len(ready_pods(real, ns)) == 2 else None

    status = eventually(at_step, timeout=300, what=f"one pod per version at 50% ({operator.log})")
    assert status["phase"] == "Progressing"
    pods = {p.metadata.labels["serving.conch.dev/version"]: p for p in ready_pods(real, ns)}
    ips = {v: real.node.dialable(p.status.pod_ip) for v, p in pods.items()}
    before = {v: _served(ip) for v, ip in ips.items()}

    inputs = example()
    body = infer_body(
        {"features": inputs["features"].numpy(), "category": inputs["category"].numpy()}
    )
    selector = {"serving.conch.dev/service": "mlp"}
    load = PodLoad(
        real.core, ns, selector, real.node.dialable, "/v2/models/mlp/infer", body,
        max_requests=REQUESTS, max_seconds=120,
    )  # fmt: skip
    with load:
        eventually(
            lambda: sum(load.ok.values()) + sum(load.failed.values()) >= REQUESTS,
            timeout=150,
            what="the load loop's requests",
        )
    served = {v: _served(ip) - before[v] for v, ip in ips.items()}
    assert sum(load.failed.values()) == 0, load.failed
    assert served == dict(load.ok)  # each pod's Triton counted what was sent to it
    share = served[v2] / sum(served.values())
    # 200 uniform picks between two pods: the canary's share is 50% +- 14% (4 sigma)
    assert 0.36 <= share <= 0.64, (share, served)
    assert _status(custom, ns)["canary"]["weight"] == 50
