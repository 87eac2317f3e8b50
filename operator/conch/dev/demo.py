"""`conch dev demo PKG`: a packaged model served by a pod on the sandbox's real node.

The package goes to the sandbox's S3 store (`conch push`, with a credentials Secret the
pull step mounts), the operator's Deployment runs on the real node (runtime init container,
the CPU Triton image, kubelet's probes), and one inference is sent to the pod's address on
the bridge, the only place besides loopback this ever dials. The answer is shown next to
the package's own expected output, so a user sees the model answer, not just `Ready`.

`--roll-out-to PKG2` then changes the ModelService to the second package's version while a
bounded load loop (conch.dev.podload) sends requests to the ready pods, reports the rollout's
progress and each version's answered requests, and asks a pod of the new version once only
its pods serve.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from conch.builders.meta import SERVICE_LABEL, VERSION_LABEL, label_value
from conch.dev import imagebuild
from conch.dev.cluster import SANDBOX_BUCKET, Cluster
from conch.dev.node import RealNode
from conch.dev.nodeconfig import NODE_LABEL, NODE_NAME, NODE_TAINT
from conch.dev.podload import PodLoad, infer_body
from conch.dev.s3 import ACCESS_KEY, REGION, SECRET_KEY
from conch_runtime.manifest import Manifest
from conch_runtime.modelversion import MODELVERSION
from conch_runtime.signature import Signature, numpy_dtype

GROUP, VERSION = "serving.conch.dev", "v1alpha1"
NAMESPACE = "conch-demo"
SECRET = "conch-sandbox-s3"
ROWS = 4
"""Validation samples sent in the one inference."""
REPLICAS = 2
CANARY_PAUSE = "15s"

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
    """A ModelService on the real node: no GPU, its label selected and its taint tolerated;
    two replicas and one timed canary step, so a rollout shows a 50/50 split between real
    pods (no metrics source in the sandbox: analysis off, the step holds for its pause)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelService",
        "metadata": {"name": name},
        "spec": {
            "modelVersion": modelversion,
            "replicas": REPLICAS,
            "resources": {"gpus": 0, "cpu": "250m", "memory": "2Gi"},
            "rollout": {
                "steps": [{"weight": 50, "pause": CANARY_PAUSE}],
                "analysis": {"enabled": False},
            },
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


def _status(api: client.CustomObjectsApi, name: str) -> dict[str, Any]:
    obj = api.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "modelservices", name)
    return dict(obj.get("status", {}))


def _ready(api: client.CustomObjectsApi, name: str) -> bool:
    conditions = _status(api, name).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _serving_pod(core: client.CoreV1Api, modelversion: str) -> client.V1Pod:
    for pod in core.list_namespaced_pod(
        NAMESPACE, label_selector=f"{VERSION_LABEL}={label_value(modelversion)}"
    ).items:
        statuses = pod.status.container_statuses or []
        if pod.metadata.deletion_timestamp:
            continue
        if pod.spec.node_name == NODE_NAME and statuses and all(s.ready for s in statuses):
            return pod
    raise RuntimeError(f"no ready pod of {modelversion} on {NODE_NAME} in {NAMESPACE}")


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


@dataclass(frozen=True)
class _Sandbox:
    """What every step of the demo talks to."""

    cluster: Cluster
    node: RealNode
    core: client.CoreV1Api
    custom: client.CustomObjectsApi
    triton_image: str


def _sandbox(cluster: Cluster) -> _Sandbox:
    """The sandbox's clients, with the runtime and Triton images in the node and the
    namespace and credentials Secret created."""
    node = cluster.real_node
    if node is None or not cluster.s3_endpoint:
        raise RuntimeError("the sandbox has no real node: `conch dev cluster up --real-node`")
    built = {b.name: b for b in imagebuild.build(["runtime", "triton"])}
    cluster.import_images([Path(b.archive) for b in built.values()])
    api_client = config.new_client_from_config(str(cluster.kubeconfig))
    core, custom = client.CoreV1Api(api_client), client.CustomObjectsApi(api_client)
    _ensure(core.create_namespace, client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
    _ensure(core.create_namespaced_secret, NAMESPACE, _secret())
    return _Sandbox(cluster, node, core, custom, built["triton"].reference)


def _pushed(box: _Sandbox, package: Path) -> tuple[Manifest, str]:
    """Push the package and apply its ModelVersion; its manifest and ModelVersion name."""
    _upload(box.cluster, package)
    mv = yaml.safe_load((package / MODELVERSION).read_text())
    _apply(box.custom, "modelversions", mv)
    return Manifest.read(package), str(mv["metadata"]["name"])


def _validation(package: Path, manifest: Manifest) -> tuple[dict[str, Array], Array]:
    """The first ROWS validation inputs and the package's expected first output for them."""
    signature = Signature.from_dict(manifest.signature)
    with np.load(package / manifest.validation["inputs"]) as data:
        inputs = {
            spec.name: np.ascontiguousarray(data[spec.name][:ROWS], numpy_dtype(spec.data_type))
            for spec in signature.inputs
        }
    with np.load(package / manifest.validation["expected"]) as data:
        expected = data[signature.output_names[0]][:ROWS]
    return inputs, expected


def _answer(
    box: _Sandbox, package: Path, manifest: Manifest, modelversion: str, started: float
) -> Answer:
    """Ask a ready pod of `modelversion` once, beside what the package expects."""
    pod = _serving_pod(box.core, modelversion)
    ip = box.node.dialable(pod.status.pod_ip)
    signature = Signature.from_dict(manifest.signature)
    inputs, expected = _validation(package, manifest)
    served = _infer(f"{ip}:8000", manifest.model, signature, inputs)
    elapsed = time.monotonic() - started
    output = signature.output_names[0]
    return Answer(manifest.model, pod.metadata.name, ip, output, served, expected, elapsed)


def run(cluster: Cluster, package: Path, timeout: float = 300) -> Answer:
    """Serve `package` from pods on `cluster`'s real node and ask one once."""
    box = _sandbox(cluster)
    manifest, mv_name = _pushed(box, package)
    started = time.monotonic()
    name = manifest.model
    _apply(box.custom, "modelservices", model_service(name, mv_name, box.triton_image))
    while not _ready(box.custom, name):
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"ModelService {NAMESPACE}/{name} not Ready in {timeout:.0f}s")
        time.sleep(1)
    return _answer(box, package, manifest, mv_name, started)


@dataclass(frozen=True)
class RolledOut:
    """The rollout under load: requests per version (answered, failed) and the new
    version's answer once it is the only one serving."""

    answer: Answer
    ok: dict[str, int]
    failed: dict[str, int]
    seconds: float


def progress_line(
    elapsed: float, status: dict[str, Any], ok: dict[str, int], failed: dict[str, int]
) -> str:
    """One line of rollout progress: phase, versions and weight from status, and the
    requests each version answered so far under the load loop."""
    stable = (status.get("stable") or {}).get("version", "-")
    canary = (status.get("canary") or {}).get("version")
    weight = (status.get("canary") or {}).get("weight", 0)
    versions = f"stable {stable}" + (f", canary {canary} at {weight}%" if canary else "")
    served = ", ".join(f"{v} {n}" for v, n in sorted(ok.items())) or "none yet"
    lost = sum(failed.values())
    return f"{elapsed:5.1f}s  {status.get('phase', '-'):<11} {versions}; answered: {served}" + (
        f"; failed: {lost}" if lost else ""
    )


def _rolled_to(status: dict[str, Any], modelversion: str) -> bool:
    return (
        status.get("phase") == "Stable"
        and (status.get("stable") or {}).get("version") == modelversion
        and not status.get("canary")
    )


def roll_out(
    cluster: Cluster,
    package: Path,
    report: Callable[[str], None],
    timeout: float = 420,
) -> RolledOut:
    """Change the served ModelService to `package`'s version while a bounded load loop
    sends requests to its ready pods; report progress about every 2 s; once only the new
    version's pods serve, ask one of them."""
    box = _sandbox(cluster)
    manifest, mv_name = _pushed(box, package)
    name = manifest.model
    selector = {SERVICE_LABEL: name}
    inputs, _ = _validation(package, manifest)
    body = infer_body(inputs)
    started = time.monotonic()
    load = PodLoad(
        box.core, NAMESPACE, selector, box.node.dialable, f"/v2/models/{name}/infer", body,
        max_seconds=timeout,
    )  # fmt: skip
    with load:
        _apply(box.custom, "modelservices", model_service(name, mv_name, box.triton_image))
        while True:
            elapsed = time.monotonic() - started
            status = _status(box.custom, name)
            report(progress_line(elapsed, status, dict(load.ok), dict(load.failed)))
            serving = {e.version for e in load.endpoints}
            if _rolled_to(status, mv_name) and serving == {label_value(mv_name)}:
                break
            if elapsed > timeout:
                raise TimeoutError(
                    f"rollout of {NAMESPACE}/{name} to {mv_name} not done in {timeout:.0f}s"
                )
            time.sleep(2)
    answer = _answer(box, package, manifest, mv_name, started)
    return RolledOut(answer, dict(load.ok), dict(load.failed), time.monotonic() - started)
