"""The catalog where serving matters (docs/catalog.md), on the package's real node: team B
serves team A's shared ModelVersion as a real pod, and the gate in that pod (in front of
Triton) refuses a caller without the endpoint key (spec.access.keySecretRef).

Each team is a user with namespaced rights in its own namespace only (impersonation): A
publishes (terms, allowed namespaces, the shared label) and grants B; B accepts the terms
by digest, writes its endpoint key Secret and serves. The artifact lies in the package's
store on the bridge address, readable without credentials (a version served from another
namespace may not need any: CredentialsNotShared).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid

import torch
from kubernetes import client

from conch.dev.imagebuild import Built
from conch.dev.operator import OperatorProcess
from conch_runtime.package import PackageResult
from tests.integration.realnode import NodeCluster, namespace
from tests.integration.realnode_serving.helpers import (
    Store,
    example_logits,
    model_service,
    modelversion_in_store,
    ready_pods,
    wait_service_ready,
)
from tests.runtime.packaging import example, trained_teacher
from tests.support import GROUP, VERSION, as_user

TERMS = {"uri": "https://legal.example.com/mlp-terms", "sha256": "e" * 64}
RULES = [
    {
        "apiGroups": [GROUP],
        "resources": ["modelservices", "modelversions", "modelaccessgrants"],
        "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
    },
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create", "patch"]},
]
HEADER = "conch-endpoint-key"


def _team(real: NodeCluster, name: str) -> tuple[str, client.CustomObjectsApi, client.ApiClient]:
    ns = namespace(real)
    user = f"{name}-{uuid.uuid4().hex[:6]}"
    api = as_user(real.cluster.kubeconfig, real.core.api_client, ns, user, RULES, role="team")
    return ns, client.CustomObjectsApi(api), api


def _status_of_call(ip: str, model: str, key: str | None) -> int:
    """The HTTP status Triton answers an inference with `key` (None: no header)."""
    body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 1], "data": [0]}]}
    headers = {"Content-Type": "application/json", **({HEADER: key} if key else {})}
    request = urllib.request.Request(
        f"http://{ip}:8000/v2/models/{model}/infer", data=json.dumps(body).encode(), headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_b_serves_a_shared_version_of_a_on_a_real_pod_and_triton_wants_the_key(
    real: NodeCluster,
    images: dict[str, Built],
    operator: OperatorProcess,
    store: Store,
    fp32_package: PackageResult,
) -> None:
    result = fp32_package
    a_ns, a, _ = _team(real, "alice")
    b_ns, b, b_api = _team(real, "bob")

    mv = modelversion_in_store(result, store)
    mv["metadata"]["labels"] = {"serving.conch.dev/catalog": "shared"}
    mv["spec"]["usage"] = {"license": "Apache-2.0", "terms": TERMS, "allowedNamespaces": [b_ns]}
    a.create_namespaced_custom_object(GROUP, VERSION, a_ns, "modelversions", mv)
    grant = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelAccessGrant",
        "metadata": {"name": "mlp-for-b"},
        "spec": {"from": [{"namespace": b_ns}], "to": [{"model": "mlp"}]},
    }
    a.create_namespaced_custom_object(GROUP, VERSION, a_ns, "modelaccessgrants", grant)

    key = uuid.uuid4().hex
    client.CoreV1Api(b_api).create_namespaced_secret(
        b_ns, {"metadata": {"name": "mlp-key"}, "stringData": {"key": key}}
    )
    svc = model_service(
        "scorer",
        mv["metadata"]["name"],
        images["triton"].reference,
        replicas=1,
        modelNamespace=a_ns,
        acceptTerms=[f"sha256:{TERMS['sha256']}"],
        access={"allowedNamespaces": [b_ns], "keySecretRef": {"name": "mlp-key"}},
    )
    b.create_namespaced_custom_object(GROUP, VERSION, b_ns, "modelservices", svc)

    wait_service_ready(b, b_ns, "scorer", operator.log)
    (pod,) = ready_pods(real, b_ns)
    assert ready_pods(real, a_ns) == []  # nothing runs in the owner's namespace
    ip = real.node.dialable(pod.status.pod_ip)
    # no key, a wrong key: the pod's gate refuses; the key: Triton behind it answers
    assert _status_of_call(ip, "mlp", None) == 401
    assert _status_of_call(ip, "mlp", "not-" + key) == 401
    served = example_logits(ip, "mlp", headers={HEADER: key})
    inputs = example()
    with torch.no_grad():
        model = trained_teacher()(inputs["features"], inputs["category"])[0]
    assert torch.allclose(served, model, atol=1e-4), (served, model)
    accepted = b.get_namespaced_custom_object(GROUP, VERSION, b_ns, "modelservices", "scorer")
    assert [t["digest"] for t in accepted["status"]["acceptedTerms"]] == [
        f"sha256:{TERMS['sha256']}"
    ]
    real.core.delete_namespace(b_ns)  # frees the node's CPUs for the next tests
    real.core.delete_namespace(a_ns)
