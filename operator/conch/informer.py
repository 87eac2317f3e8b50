"""Watched state: a list+watch per kind, filtered by the API server, kept in memory.

kopf filters labels on the client, so watching Deployments through it means receiving
every Deployment of every team. An `Informer` asks the API server for Conch's objects only
(`labelSelector=app.kubernetes.io/managed-by=conch-operator`), so a busy cluster's other
objects cost nothing, and keeps what it saw, so a reconcile reads its children from memory
instead of listing them. Objects are kept without `managedFields` (Conch never reads them).

One thread per kind and namespace scope: list, then watch from the list's
resourceVersion; a watch that ends is resumed, one that expired (410) starts over.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from conch.builders.meta import Manifest
from conch.kube import Kind

log = logging.getLogger("conch.informer")

Key = tuple[str, str]
"""(namespace, name)."""


def _collection(kind: Kind, namespace: str | None) -> str:
    if namespace:
        return kind.path(namespace)
    prefix = "/api/v1" if kind.api_version == "v1" else f"/apis/{kind.api_version}"
    return f"{prefix}/{kind.plural}"


def _trim(obj: Manifest, kind: Kind) -> Manifest:
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k != "managedFields"}
    return {**obj, "apiVersion": kind.api_version, "kind": kind.kind, "metadata": meta}


class Informer:
    """The objects of one kind that match `selector`, in `namespaces` (None: all)."""

    def __init__(
        self,
        api: client.ApiClient,
        kind: Kind,
        selector: str,
        namespaces: Iterable[str] | None = None,
        on_change: Callable[[Manifest], None] = lambda obj: None,
        timeout: int = 300,
    ) -> None:
        self.api = api
        self.kind = kind
        self.selector = selector
        self.scopes: list[str | None] = list(namespaces) if namespaces else [None]
        self.on_change = on_change
        self.timeout = timeout
        self._objects: dict[Key, Manifest] = {}
        self._lock = threading.Lock()
        self._synced = [threading.Event() for _ in self.scopes]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- reading -----------------------------------------------------------------------

    def get(self, namespace: str, name: str) -> Manifest | None:
        with self._lock:
            return self._objects.get((namespace, name))

    def select(self, namespace: str, labels: dict[str, str]) -> list[Manifest]:
        """Objects in `namespace` carrying every label of `labels`."""
        with self._lock:
            return [
                obj
                for (ns, _), obj in self._objects.items()
                if ns == namespace
                and all(obj["metadata"].get("labels", {}).get(k) == v for k, v in labels.items())
            ]

    def __len__(self) -> int:
        with self._lock:
            return len(self._objects)

    # -- running -----------------------------------------------------------------------

    def start(self) -> Informer:
        for index, scope in enumerate(self.scopes):
            thread = threading.Thread(
                target=self._run, args=(index, scope), daemon=True, name=f"watch-{self.kind.plural}"
            )
            thread.start()
            self._threads.append(thread)
        return self

    def wait_synced(self, timeout: float = 60) -> bool:
        deadline = time.monotonic() + timeout
        return all(e.wait(max(deadline - time.monotonic(), 0)) for e in self._synced)

    def stop(self) -> None:
        self._stop.set()

    def _run(self, index: int, namespace: str | None) -> None:
        path = _collection(self.kind, namespace)
        while not self._stop.is_set():
            try:
                version: str | None = self._list(path, namespace)
                self._synced[index].set()
                while not self._stop.is_set() and version:
                    version = self._watch(path, version)
            except ApiException as error:
                if error.status != 404:
                    raise
                # the kind is not served (an optional CRD): nothing to hold; look again later
                self._synced[index].set()
                self._stop.wait(30.0)
            except Exception as error:  # the API server went away, or answered oddly
                if self._stop.is_set():
                    return
                log.warning("watch %s: %s; listing again", path, error)
                self._stop.wait(1.0)

    def _request(self, path: str, query: list[tuple[str, str]], timeout: float) -> Any:
        return self.api.call_api(
            path,
            "GET",
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
            _preload_content=False,
            _request_timeout=timeout,
        )

    def _list(self, path: str, namespace: str | None) -> str:
        query = [("labelSelector", self.selector)] if self.selector else []
        response = self._request(path, query, 60)
        listed = json.loads(response.data)
        fresh = {
            (o["metadata"]["namespace"], o["metadata"]["name"]): _trim(o, self.kind)
            for o in listed.get("items", [])
        }
        with self._lock:
            gone = [
                obj
                for key, obj in self._objects.items()
                if (namespace is None or key[0] == namespace) and key not in fresh
            ]
            for obj in gone:
                del self._objects[(obj["metadata"]["namespace"], obj["metadata"]["name"])]
            self._objects.update(fresh)
        for obj in [*gone, *fresh.values()]:
            self.on_change(obj)
        return str(listed["metadata"]["resourceVersion"])

    def _watch(self, path: str, version: str) -> str | None:
        """Follow changes from `version`; the version to resume from, or None to relist."""
        query = [("labelSelector", self.selector)] if self.selector else []
        query += [
            ("watch", "true"),
            ("resourceVersion", version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(self.timeout)),
        ]
        response = self._request(path, query, self.timeout + 30)
        try:
            for line in iter_resp_lines(response):
                if self._stop.is_set():
                    return None
                event = json.loads(line)
                kind, obj = event["type"], event["object"]
                if kind == "ERROR":
                    return None  # 410 Gone and friends: list again
                version = obj["metadata"].get("resourceVersion", version)
                if kind == "BOOKMARK":
                    continue
                trimmed = _trim(obj, self.kind)
                key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
                with self._lock:
                    if kind == "DELETED":
                        self._objects.pop(key, None)
                    else:
                        self._objects[key] = trimmed
                self.on_change(trimmed)
        finally:
            response.release_conn()
        return version


class Watched:
    """Every informer the controller reads from: Conch's owned kinds (by the managed-by
    label), ModelVersions and ModelAccessGrants."""

    def __init__(
        self,
        api: client.ApiClient,
        owned: dict[str, Kind],
        versions: Kind,
        selector: str,
        namespaces: Iterable[str] | None = None,
        grants: Kind | None = None,
    ) -> None:
        self.owned = {
            name: Informer(api, kind, selector, namespaces) for name, kind in owned.items()
        }
        self.versions = Informer(api, versions, "", namespaces)
        self.grants = Informer(api, grants, "", namespaces) if grants else None

    def _all(self) -> tuple[Informer, ...]:
        return (
            *self.owned.values(),
            self.versions,
            *([self.grants] if self.grants is not None else []),
        )

    def start(
        self,
        on_owned: Callable[[Manifest], None] = lambda obj: None,
        on_grant: Callable[[Manifest], None] = lambda obj: None,
    ) -> None:
        """Start watching; `on_owned` is called (from the watch threads) for every change
        of an owned object, `on_grant` for every change of a ModelAccessGrant (a revocation
        reaches the services that use it without a restart)."""
        for informer in self.owned.values():
            informer.on_change = on_owned
            informer.start()
        self.versions.start()
        if self.grants is not None:  # (an Informer with nothing in it is falsy)
            self.grants.on_change = on_grant
            self.grants.start()

    def wait_synced(self, timeout: float = 120) -> bool:
        return all(i.wait_synced(timeout) for i in self._all())

    def stop(self) -> None:
        for informer in self._all():
            informer.stop()
