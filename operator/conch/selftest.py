"""`conch operator selftest`: prove that a running operator reconciles, as the chart's
`helm test` hook runs it.

It creates a ModelVersion and a ModelService with zero replicas, so nothing is pulled and
no GPU is taken anywhere, waits until the operator has recorded the service in status
(its generation observed, the version stable), and deletes both again. A ModelVersion is
deleted only once no ModelService uses it (the chart's admission policy), so the
service goes first and the version is retried until the operator has let go of it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

__all__ = ["SelftestFailed", "manifests", "reconciled", "run"]

GROUP, VERSION = "serving.conch.dev", "v1alpha1"
_SHA256 = "0" * 64
"""Never checked: with zero replicas no pod pulls the artifact."""


class SelftestFailed(Exception):
    """The operator did not reconcile the probe objects in time."""


@dataclass(frozen=True)
class Verdict:
    done: bool
    detail: str


def manifests(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The probe ModelVersion and a zero-replica ModelService serving it."""
    labels = {"app.kubernetes.io/component": "selftest"}
    version = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelVersion",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "model": "conch-selftest",
            "version": "0.0.0",
            "format": "onnx",
            "source": {"uri": "https://conch-selftest.invalid/model.onnx", "sha256": _SHA256},
            "signature": {
                "maxBatchSize": 0,
                "inputs": [{"name": "x", "dataType": "TYPE_FP32", "dims": [1]}],
                "outputs": [{"name": "y", "dataType": "TYPE_FP32", "dims": [1]}],
            },
        },
    }
    service = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelService",
        "metadata": {"name": name, "labels": labels},
        "spec": {"modelVersion": name, "replicas": 0, "resources": {"gpus": 0}},
    }
    return version, service


def reconciled(service: dict[str, Any]) -> Verdict:
    """Whether the operator has reconciled `service`: its current generation observed
    and the requested version recorded as stable."""
    meta, status = service.get("metadata", {}), service.get("status") or {}
    conditions = ", ".join(
        f"{c.get('type')}={c.get('status')} ({c.get('reason')}: {c.get('message', '')})"
        for c in status.get("conditions", [])
    )
    observed = status.get("observedGeneration")
    stable = (status.get("stable") or {}).get("version")
    wanted = service.get("spec", {}).get("modelVersion")
    if observed is None:
        return Verdict(False, "no status yet: is the operator running and watching here?")
    if observed < meta.get("generation", 1) or stable != wanted:
        return Verdict(False, f"observedGeneration {observed}, stable {stable}; {conditions}")
    return Verdict(True, f"reconciled: stable {stable}, phase {status.get('phase')}")


def _until(check: Callable[[], Verdict], timeout: float) -> Verdict:
    deadline = time.monotonic() + timeout
    verdict = check()
    while not verdict.done and time.monotonic() < deadline:
        time.sleep(1)
        verdict = check()
    return verdict


def run(api: client.ApiClient, namespace: str, timeout: float = 120) -> str:
    """Create, wait, delete. Returns what the operator recorded; raises SelftestFailed."""
    custom = client.CustomObjectsApi(api)
    name = f"conch-selftest-{uuid.uuid4().hex[:6]}"
    version, service = manifests(name)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "modelversions", version)
    try:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "modelservices", service)
        try:
            verdict = _until(
                lambda: reconciled(
                    custom.get_namespaced_custom_object(
                        GROUP, VERSION, namespace, "modelservices", name
                    )
                ),
                timeout,
            )
        finally:
            _delete(custom, namespace, "modelservices", name)
    finally:
        gone = _until(lambda: _delete(custom, namespace, "modelversions", name), 60)
    if not verdict.done:
        raise SelftestFailed(
            f"ModelService {namespace}/{name} after {timeout:g}s: {verdict.detail}"
        )
    if not gone.done:
        raise SelftestFailed(f"ModelVersion {namespace}/{name} not deleted: {gone.detail}")
    return f"ModelService {namespace}/{name} {verdict.detail}"


def _delete(custom: client.CustomObjectsApi, namespace: str, plural: str, name: str) -> Verdict:
    try:
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
    except ApiException as error:
        if error.status == 404:
            return Verdict(True, "deleted")
        return Verdict(False, f"HTTP {error.status}: {error.reason}")
    return Verdict(True, "deleted")
