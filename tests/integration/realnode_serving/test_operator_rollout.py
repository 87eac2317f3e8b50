"""The operator's Deployments on the real node, end to end, in one ModelService's life (one
test, so the node starts each Triton once):

1. v1 (fp32): the runtime image's init container pulls and verifies the artifact from the
   store on the bridge address, Triton serves it, Ready comes from kubelet's probes, and the
   answer on the pod's address matches the model. The pod runs in an enforce=restricted
   namespace with a read-only root (a write there fails in the running container).
2. A rollout to v2, an int8 package, at one canary step of 50% (`router:
   replicas`, two replicas: one real pod per version; analysis off, so the step holds for
   its pause). While it holds, the load loop sends requests to the ready pods the way
   kube-proxy would (uniformly over the Service's ready pods), and each pod's Triton counts
   what it served: the split is read from Triton's own `nv_inference_request_success` on
   each pod's metrics port, and it is the weight status reports.
3. The int8 pod answers what the int8 package's model file computes (TorchScript of torch's
   x86 quantized kernels, which the sandbox Triton image's torch runs).
"""

from __future__ import annotations

import math
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import torch
from kubernetes import client

from conch.dev.imagebuild import Built
from conch.dev.operator import OperatorProcess
from conch.dev.podload import PodLoad, infer_body
from conch.dev.toolchain import Toolchain
from conch_runtime.export import load_saved
from conch_runtime.package import PackageResult
from tests.integration.realnode import NodeCluster, namespace
from tests.integration.realnode_serving.helpers import (
    Store,
    example_logits,
    mlp_package,
    model_service,
    modelversion_in_store,
    ready_pods,
    wait_service_ready,
)
from tests.runtime.packaging import example, trained_teacher
from tests.support import GROUP, VERSION, eventually

REQUESTS = 120
LOAD_SECONDS = 150
"""0.5-2 requests a second get through on a busy 2-core machine (CPU Tritons)."""
SUCCESS = re.compile(r'^nv_inference_request_success\{[^}]*model="mlp"[^}]*\} (\S+)$', re.M)
VERSION_LABEL = "serving.conch.dev/version"


def _served(ip: str) -> int:
    """Requests Triton in the pod at `ip` answered, from its metrics endpoint."""
    with urllib.request.urlopen(f"http://{ip}:8002/metrics", timeout=10) as response:
        text = response.read().decode()
    match = SUCCESS.search(text)
    return int(float(match.group(1))) if match else 0


def _status(custom: client.CustomObjectsApi, ns: str) -> dict[str, Any]:
    obj = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "modelservices", "mlp")
    return dict(obj.get("status", {}))


def _expected(result: PackageResult) -> torch.Tensor:
    """What the package's own model file answers for the example (int8 differs from the
    fp32 model; this is what a pod running it must answer)."""
    [model_file] = result.repository.glob("mlp/1/model.pt*")
    inputs = example()
    logits: torch.Tensor = load_saved(model_file)(inputs["features"], inputs["category"])[0]
    return logits


def _read_only_root_under_restricted(real: NodeCluster, tc: Toolchain, pod: client.V1Pod) -> None:
    """The serving pod runs in an enforce=restricted namespace, every container with a
    read-only root, and the running Triton container really cannot write there."""
    ns = pod.metadata.namespace
    labels = real.core.read_namespace(ns).metadata.labels
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    for c in [*pod.spec.init_containers, *pod.spec.containers]:
        assert c.security_context.read_only_root_filesystem is True, c.name
    argv = ("exec", f"--namespace={ns}", pod.metadata.name, "-c", "triton", "--")
    with pytest.raises(RuntimeError, match="Read-only file system"):
        real.cluster.kubectl(tc, *argv, "touch", "/conch-probe")


def test_serving_then_a_rollout_to_int8_split_between_real_pods(
    real: NodeCluster,
    toolchain: Toolchain,
    images: dict[str, Built],
    operator: OperatorProcess,
    store: Store,
    fp32_package: PackageResult,
    tmp_path: Path,
) -> None:
    fp32, int8 = fp32_package, mlp_package(tmp_path / "v2", "2.0.0", int8=True)
    mvs = [modelversion_in_store(r, store) for r in (fp32, int8)]
    ns = namespace(real)
    custom = client.CustomObjectsApi(real.core.api_client)
    for mv in mvs:
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, "modelversions", mv)
    v1, v2 = (mv["metadata"]["name"] for mv in mvs)
    rollout = {"steps": [{"weight": 50, "pause": "10m"}], "analysis": {"enabled": False}}
    svc = model_service("mlp", v1, images["triton"].reference, replicas=2, rollout=rollout)
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "modelservices", svc)

    wait_service_ready(custom, ns, "mlp", operator.log)
    first = ready_pods(real, ns)[0]
    _read_only_root_under_restricted(real, toolchain, first)
    served = example_logits(real.node.dialable(first.status.pod_ip), "mlp")
    inputs = example()
    with torch.no_grad():
        model = trained_teacher()(inputs["features"], inputs["category"])[0]
    assert torch.allclose(served, model, atol=1e-4), (served, model)

    patch = {"spec": {"modelVersion": v2}}
    custom.patch_namespaced_custom_object(GROUP, VERSION, ns, "modelservices", "mlp", patch)

    def at_step() -> dict[str, client.V1Pod] | None:
        weight = (_status(custom, ns).get("canary") or {}).get("weight")
        pods = {p.metadata.labels[VERSION_LABEL]: p for p in ready_pods(real, ns)}
        both = weight == 50 and set(pods) == {v1, v2} and len(ready_pods(real, ns)) == 2
        return pods if both else None

    pods = eventually(at_step, timeout=300, what=f"one pod per version at 50% ({operator.log})")
    assert _status(custom, ns)["phase"] == "Progressing"
    ips = {v: real.node.dialable(p.status.pod_ip) for v, p in pods.items()}
    before = {v: _served(ip) for v, ip in ips.items()}

    features, category = inputs["features"].numpy(), inputs["category"].numpy()
    body = infer_body({"features": features, "category": category})
    selector = {"serving.conch.dev/service": "mlp"}
    load = PodLoad(
        real.core, ns, selector, real.node.dialable, "/v2/models/mlp/infer", body,
        max_requests=REQUESTS, max_seconds=LOAD_SECONDS,
    )  # fmt: skip
    began = time.monotonic()
    with load:  # until its budget or its time is spent (a busy machine gets fewer through)
        eventually(
            lambda: (
                sum(load.ok.values()) + sum(load.failed.values()) >= REQUESTS
                or time.monotonic() - began > LOAD_SECONDS + 5
            ),
            timeout=LOAD_SECONDS + 30,
            what="the load loop's requests",
        )
    counted = {v: _served(ip) - before[v] for v, ip in ips.items()}
    assert sum(load.failed.values()) == 0, load.failed
    assert counted == dict(load.ok)  # each pod's Triton counted what was sent to it
    total = sum(counted.values())
    assert total >= 40, counted
    share = counted[v2] / total
    # n uniform picks between two pods: the canary's share is 50% within 4 sigma
    assert abs(share - 0.5) <= 4 * 0.5 / math.sqrt(total), (share, counted)
    assert _status(custom, ns)["canary"]["weight"] == 50

    served = example_logits(ips[v2], "mlp")
    expected = _expected(int8)
    assert torch.allclose(served, expected, atol=1e-4), (served, expected)
    assert not torch.allclose(served, model, atol=1e-6)  # it is the int8 model that answered
    real.core.delete_namespace(ns)  # frees the node's CPUs for the next tests
