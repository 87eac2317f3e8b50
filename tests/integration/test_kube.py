"""conch.kube against the real API server: what an apply reports, and what a dry run says."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from conch.builders.meta import SERVICE_LABEL
from conch.errors import ApiError
from conch.kube import Applied, Kube
from conch.rest import Rest


def service(namespace: str, name: str, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": {SERVICE_LABEL: name}},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": port}]},
    }


def test_applied_says_exactly_what_the_server_did(rest: Rest, namespace: str) -> None:
    kube = Kube(rest)
    created, first = kube.apply(service(namespace, "a", 80))
    assert created is Applied.CREATED
    # the same object again, as observed: the server writes nothing
    unchanged, same = kube.apply(service(namespace, "a", 80), first)
    assert unchanged is Applied.UNCHANGED
    assert same["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    # a change within the same second is still an update (no clock is compared)
    updated, second = kube.apply(service(namespace, "a", 81), same)
    assert updated is Applied.UPDATED
    assert second["spec"]["ports"][0]["port"] == 81
    assert kube.apply(service(namespace, "a", 81), second)[0] is Applied.UNCHANGED


def test_an_apply_over_a_stale_observation_is_a_conflict_and_writes_nothing(
    api: client.ApiClient, rest: Rest, namespace: str
) -> None:
    kube = Kube(rest)
    _, first = kube.apply(service(namespace, "b", 80))
    _, moved = kube.apply(service(namespace, "b", 81), first)
    with pytest.raises(ApiError) as raised:
        kube.apply(service(namespace, "b", 82), first)  # `first` is no longer what is there
    assert raised.value.status == 409 and raised.value.temporary
    now = client.CoreV1Api(api).read_namespaced_service("b", namespace)
    assert now.metadata.resource_version == moved["metadata"]["resourceVersion"]
    assert now.spec.ports[0].port == 81


def test_a_dry_run_says_whether_the_name_is_free(
    api: client.ApiClient, rest: Rest, namespace: str
) -> None:
    kube = Kube(rest)
    assert kube.dry_run(service(namespace, "c", 80)) is True
    assert not client.CoreV1Api(api).list_namespaced_service(namespace).items  # nothing stored
    kube.apply(service(namespace, "c", 80))
    assert kube.dry_run(service(namespace, "c", 81)) is False
