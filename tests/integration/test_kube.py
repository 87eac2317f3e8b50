"""conch.kube against the real API server: the bookkeeping that says Created/Updated."""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client

from conch.builders.meta import SERVICE_LABEL
from conch.kube import Applied, Kube


def service(namespace: str, name: str, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": {SERVICE_LABEL: name}},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": port}]},
    }


def test_forgetting_a_service_keeps_a_longer_named_ones_bookkeeping(
    api: client.ApiClient, namespace: str
) -> None:
    kube = Kube(api)
    assert kube.apply(service(namespace, "a", 80))[0] is Applied.CREATED
    assert kube.apply(service(namespace, "ab", 80))[0] is Applied.CREATED
    assert kube.apply(service(namespace, "ab", 80))[0] is Applied.UNCHANGED
    kube.forget(namespace, "a")
    time.sleep(1.1)  # managedFields times have whole seconds: a change must land in a later one
    # `ab` is still known: a change to it is an update, not a silent re-apply
    assert kube.apply(service(namespace, "ab", 81))[0] is Applied.UPDATED
    # `a` was forgotten: a changed apply finds no earlier stamp to compare with
    assert kube.apply(service(namespace, "a", 81))[0] is Applied.UNCHANGED
