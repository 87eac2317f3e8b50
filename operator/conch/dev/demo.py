"""`conch dev demo PKG`: a packaged model served by a pod on the sandbox's real node.

The package goes to the sandbox's S3 store (`conch push`, with a credentials Secret the
pull step mounts), the operator's Deployment runs on the real node (runtime init container,
the CPU Triton image, kubelet's probes), and one inference is sent to the pod's address on
the bridge, the only place besides loopback this ever dials. The answer is shown next to
the package's own expected output, so a user sees the model answer, not just `Ready`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from conch.dev import imagebuild
from conch.dev.cluster import SANDBOX_BUCKET, Cluster
from conch.dev.nodeconfig import NODE_LABEL, NODE_NAME, NODE_TAINT
from conch.dev.s3 import ACCESS_KEY, REGION, SECRET_KEY
from conch_runtime.manifest import Manifest
from conch_runtime.modelversion import MODELVERSION
from conch_runtime.signature import Signature, numpy_dtype

GROUP, VERSION = "serving.conch.dev", "v1alpha1"
NAMESPACE = "conch-demo"
SECRET = "conch-sandbox-s3"
ROWS = 4
"""Validation samples sent in the one inference."""

Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class Answer:
    """What the pod answered, what the package expected, and how long it took."""

    model: str
    pod: str
    pod_ip: str
    output: str
    served: Array
    expected: Array
    apply_to_answer_s: float


def comparison_rows(served: Array, expected: Array) -> list[tuple[str, str, str, str]]:
    """Per sample: index, expected and served argmax (with its value), largest |difference|."""
    rows = []
    for i, (got, want) in enumerate(zip(served, expected, strict=True)):
        g, w = got.reshape(-1), want.reshape(-1)
        rows.append(
            (
                str(i),
                f"{int(w.argmax())} ({w.max():.4f})",
                f"{int(g.argmax())} ({g.max():.4f})",
                f"{float(np.abs(g - w).max()):.2e}",
            )
        )
    return rows


def model_service(name: str, modelversion: str, triton_image: str) -> dict[str, Any]:
    """A ModelService on the real node: no GPU, its label selected and its taint tolerated."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelService",
        "metadata": {"name": name},
        "spec": {
            "modelVersion": modelversion,
            "resources": {"gpus": 0, "cpu": "1", "memory": "2Gi"},
            "triton": {"image": triton_image},
            "scheduling": {
                "nodeSelector": {NODE_LABEL[0]: NODE_LABEL[1]},
                "tolerations": [{**NODE_TAINT, "operator": "Equal"}],
            },
        },
    }


def _apply(api: client.CustomObjectsApi, plural: str, body: dict[str, Any]) -> None:
    name = body["metadata"]["name"]
    try:
        api.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, plural, body)
    except ApiException as error:
        if error.status != 409:
            raise
        current = api.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, plural, name)
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        api.replace_namespaced_custom_object(GROUP, VERSION, NAMESPACE, plural, name, body)


def _ensure(create: Any, *args: Any) -> None:
    """Create, keeping what is already there (a second demo run reuses it)."""
    try:
        create(*args)
    except ApiException as error:
        if error.status != 409:
            raise


def _upload(cluster: Cluster, package: Path) -> None:
    """Create the bucket and `conch push` the package (ModelVersion rewritten to s3://)."""
    import boto3
    from botocore.config import Config

    from conch_runtime.push import push

    s3 = boto3.client(
        "s3",
        endpoint_url=cluster.s3_endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
        config=Config(s3={"addressing_style": "path"}),
    )
    names = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if SANDBOX_BUCKET not in names:
        s3.create_bucket(Bucket=SANDBOX_BUCKET)
    push(
        package,
        f"s3://{SANDBOX_BUCKET}/models",
        endpoint=cluster.s3_endpoint,
        credentials_secret=SECRET,
        client=s3,
    )


def _secret() -> client.V1Secret:
    """The store's keys as the files the pull step reads (conch_runtime.sources)."""
    return client.V1Secret(
        metadata=client.V1ObjectMeta(
            name=SECRET, labels={"serving.conch.dev/artifact-credentials": "true"}
        ),
        string_data={
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
        },
    )


def _ready(api: client.CustomObjectsApi, name: str) -> bool:
    obj = api.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "modelservices", name)
    conditions = obj.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _serving_pod(core: client.CoreV1Api) -> client.V1Pod:
    for pod in core.list_namespaced_pod(NAMESPACE).items:
        statuses = pod.status.container_statuses or []
        if pod.spec.node_name == NODE_NAME and statuses and all(s.ready for s in statuses):
            return pod
    raise RuntimeError(f"no ready pod on {NODE_NAME} in {NAMESPACE}")


def _infer(address: str, model: str, signature: Signature, inputs: dict[str, Array]) -> Array:
    """One KServe v2 request to Triton in the pod; the first output."""
    import tritonclient.http as http

    triton = http.InferenceServerClient(address, network_timeout=60.0)
    try:
        tensors = []
        for spec in signature.inputs:
            array = np.ascontiguousarray(inputs[spec.name], dtype=numpy_dtype(spec.data_type))
            tensor = http.InferInput(spec.name, list(array.shape), spec.data_type[5:])
            tensor.set_data_from_numpy(array, binary_data=True)
            tensors.append(tensor)
        output = signature.output_names[0]
        result = triton.infer(
            model, tensors, outputs=[http.InferRequestedOutput(output, binary_data=True)]
        )
        return np.asarray(result.as_numpy(output))
    finally:
        triton.close()


def run(cluster: Cluster, package: Path, timeout: float = 300) -> Answer:
    """Serve `package` from a pod on `cluster`'s real node and ask it once."""
    node = cluster.real_node
    if node is None or not cluster.s3_endpoint:
        raise RuntimeError("the sandbox has no real node: `conch dev cluster up --real-node`")
    built = {b.name: b for b in imagebuild.build(["runtime", "triton"])}
    cluster.import_images([Path(b.archive) for b in built.values()])
    api_client = config.new_client_from_config(str(cluster.kubeconfig))
    core, custom = client.CoreV1Api(api_client), client.CustomObjectsApi(api_client)
    _ensure(core.create_namespace, client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
    _ensure(core.create_namespaced_secret, NAMESPACE, _secret())
    _upload(cluster, package)
    manifest = Manifest.read(package)
    mv = yaml.safe_load((package / MODELVERSION).read_text())
    started = time.monotonic()
    _apply(custom, "modelversions", mv)
    name = manifest.model
    _apply(
        custom,
        "modelservices",
        model_service(name, mv["metadata"]["name"], built["triton"].reference),
    )
    while not _ready(custom, name):
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"ModelService {NAMESPACE}/{name} not Ready in {timeout:.0f}s")
        time.sleep(1)
    pod = _serving_pod(core)
    ip = node.dialable(pod.status.pod_ip)
    signature = Signature.from_dict(manifest.signature)
    with np.load(package / manifest.validation["inputs"]) as data:
        inputs = {n: data[n][:ROWS] for n in signature.input_names}
    served = _infer(f"{ip}:8000", name, signature, inputs)
    elapsed = time.monotonic() - started
    output = signature.output_names[0]
    with np.load(package / manifest.validation["expected"]) as data:
        expected = data[output][:ROWS]
    return Answer(name, pod.metadata.name, ip, output, served, expected, elapsed)
