"""conch.informer against the real API server: paged lists, the service index, (before,
after) changes, and whether a kind is served."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from kubernetes import client

from conch import informer
from conch.builders.meta import MANAGED_BY, MANAGER, SERVICE_LABEL, Manifest
from conch.informer import Informer
from conch.kube import OWNED, Kind, Kube
from conch.rest import Rest
from tests.support import eventually

SERVICE = OWNED["Service"]


def service(namespace: str, name: str, owner: str, port: int = 80) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {SERVICE_LABEL: owner, MANAGED_BY: MANAGER},
        },
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": port}]},
    }


def names(objects: list[Manifest]) -> list[str]:
    return sorted(o["metadata"]["name"] for o in objects)


def test_lists_in_pages_indexes_by_service_and_reports_changes(
    api: client.ApiClient, rest: Rest, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(informer, "PAGE", 2)  # five objects: three pages
    kube = Kube(rest)
    for i in range(4):
        kube.apply(service(namespace, f"a-{i}", "a"))
    kube.apply(service(namespace, "b-0", "b"))
    # not Conch's: the server-side selector keeps it out
    client.CoreV1Api(api).create_namespaced_service(
        namespace, {"metadata": {"name": "other"}, "spec": {"ports": [{"port": 80}]}}
    )
    changes: list[tuple[Manifest | None, Manifest | None]] = []
    lock = threading.Lock()

    def seen(before: Manifest | None, after: Manifest | None) -> None:
        with lock:
            changes.append((before, after))

    watch = Informer(
        rest,
        SERVICE,
        f"{MANAGED_BY}={MANAGER}",
        [namespace],
        on_change=seen,
        index=SERVICE_LABEL,
    ).start()
    try:
        assert watch.wait_synced(30) and watch.served
        assert len(watch) == 5
        assert names(watch.select(namespace, {SERVICE_LABEL: "a"})) == [f"a-{i}" for i in range(4)]
        assert names(watch.select(namespace, {SERVICE_LABEL: "b"})) == ["b-0"]
        kept = watch.get(namespace, "a-0")
        assert kept is not None and kept["kind"] == "Service"
        assert "managedFields" not in kept["metadata"]
        assert all(before is None for before, _ in changes) and len(changes) == 5

        # moved to another service: the index follows, the change carries both versions
        kube.apply(service(namespace, "a-3", "b", port=81))
        eventually(
            lambda: names(watch.select(namespace, {SERVICE_LABEL: "b"})) == ["a-3", "b-0"],
            what="a-3 indexed under b",
        )
        assert names(watch.select(namespace, {SERVICE_LABEL: "a"})) == ["a-0", "a-1", "a-2"]
        before, after = changes[-1]
        assert before is not None and before["metadata"]["labels"][SERVICE_LABEL] == "a"
        assert after is not None and after["spec"]["ports"][0]["port"] == 81

        client.CoreV1Api(api).delete_namespaced_service("a-0", namespace)
        eventually(lambda: watch.get(namespace, "a-0") is None, what="a-0 forgotten")
        assert changes[-1][0] is not None and changes[-1][1] is None
        assert names(watch.select(namespace, {SERVICE_LABEL: "a"})) == ["a-1", "a-2"]
    finally:
        watch.stop()


def test_a_kind_the_server_does_not_serve_is_not_served(rest: Rest) -> None:
    missing = Kind("nothing.example.com/v1", "Nothing", "nothings")
    watch = Informer(rest, missing, "").start()
    try:
        assert watch.wait_synced(30)
        assert watch.served is False and len(watch) == 0
    finally:
        watch.stop()
