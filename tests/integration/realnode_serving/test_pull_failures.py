"""Every reason the pull step can fail for reaches the ModelService's status from a real
init-container exit on the real node: the runtime image's `conch pull` exits with its
reason's code, kubelet records it in the pod's status, and the operator names the reason.

All four ModelServices are created at once in one namespace (their init containers fail in
seconds, so the node runs them side by side); the store is the package's HTTP server on the
bridge address.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path
from typing import Any

from kubernetes import client

from conch.dev.imagebuild import Built
from conch.dev.operator import OperatorProcess
from conch_runtime import pull_contract
from conch_runtime.package import PackageResult
from tests.integration.realnode import NodeCluster, namespace
from tests.integration.realnode_serving.helpers import (
    DENIED,
    Store,
    conditions,
    model_service,
    modelversion_in_store,
)
from tests.support import GROUP, VERSION, eventually


def _hostile_archive(path: Path) -> str:
    """A gzipped tar whose one member escapes the destination; its sha256."""
    data = b"not a model"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buffer.getvalue())
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def _pull_exit(real: NodeCluster, ns: str, service: str) -> int | None:
    """The pull container's last non-zero exit code in the service's pod, if any."""
    pods = real.core.list_namespaced_pod(ns, label_selector=f"serving.conch.dev/service={service}")
    for pod in pods.items:
        for status in pod.status.init_container_statuses or []:
            if status.name != pull_contract.CONTAINER:
                continue
            for state in (status.state, status.last_state):
                if state and state.terminated and state.terminated.exit_code:
                    return int(state.terminated.exit_code)
    return None


def test_every_pull_failure_reason_reaches_status_from_a_real_exit(
    real: NodeCluster,
    images: dict[str, Built],
    operator: OperatorProcess,
    store: Store,
    fp32_package: PackageResult,
) -> None:
    good = modelversion_in_store(fp32_package, store)
    (store.root / DENIED).mkdir(exist_ok=True)
    hostile_sha = _hostile_archive(store.root / "hostile.tar.gz")
    cases = {  # service name -> (expected reason, exit code, source)
        "missing": ("ArtifactNotFound", 5, {"uri": f"{store.url}/nothing-here.tar.gz"}),
        "tampered": ("DigestMismatch", 9, {"sha256": "0" * 64}),
        "hostile": (
            "HostileArchive",
            11,
            {"uri": f"{store.url}/hostile.tar.gz", "sha256": hostile_sha},
        ),
        "refused": ("AccessDenied", 6, {"uri": f"{store.url}/{DENIED}/model.tar.gz"}),
    }
    ns = namespace(real)
    custom = client.CustomObjectsApi(real.core.api_client)
    for name, (_, _, source) in cases.items():
        mv = {**good, "metadata": {"name": f"mlp-{name}"}}
        mv["spec"] = {**good["spec"], "source": {**good["spec"]["source"], **source}}
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, "modelversions", mv)
        svc = model_service(name, f"mlp-{name}", images["triton"].reference)
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, "modelservices", svc)

    for name, (reason, code, _) in cases.items():

        def reported(name: str = name, reason: str = reason) -> dict[str, Any] | None:
            ready = conditions(custom, ns, name).get("Ready")
            return ready if ready and ready["reason"] == reason else None

        ready = eventually(
            reported, timeout=180, what=f"Ready reason {reason} on {name} (log {operator.log})"
        )
        assert ready["status"] == "False"
        assert "pulling the model failed" in ready["message"], ready
        assert _pull_exit(real, ns, name) == code  # kubelet saw the runtime's own exit
        degraded = conditions(custom, ns, name)["Degraded"]
        assert (degraded["status"], degraded["reason"]) == ("True", reason)
    real.core.delete_namespace(ns)  # its pods' init containers would keep restarting
