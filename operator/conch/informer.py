"""Watched state: a list+watch per kind, filtered by the API server, kept in memory.

kopf filters labels on the client, so watching Deployments through it means receiving
every Deployment of every team. An `Informer` asks the API server for Conch's objects only
(`labelSelector=app.kubernetes.io/managed-by=conch-operator`), so a busy cluster's other
objects cost nothing, and keeps what it saw, so a reconcile reads its children from memory
instead of listing them. Objects are kept without `managedFields` (but for a mark:
`conch.ownership`), serialized.

One thread per kind and namespace scope: list (in pages), then watch from the list's
resourceVersion; a watch that ends is resumed, one that expired (410) starts over.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable

from conch import ownership
from conch.builders.meta import SERVICE_LABEL, Manifest
from conch.kube import Kind
from conch.rest import Query, Rest, RestError

log = logging.getLogger("conch.informer")

Key = tuple[str, str]
"""(namespace, name)."""


def _collection(kind: Kind, namespace: str | None) -> str:
    if namespace:
        return kind.path(namespace)
    prefix = "/api/v1" if kind.api_version == "v1" else f"/apis/{kind.api_version}"
    return f"{prefix}/{kind.plural}"


PAGE = 250
"""Objects per list request."""

Change = Callable[[Manifest | None, Manifest | None], None]
"""Called with (before, after) for every change: after is None when the object is gone,
before is None when it is new."""
Index = Callable[[Manifest], Iterable[Key]]
"""The (namespace, value) keys an object is found under with `Informer.indexed`; the
namespace may be another than the object's own (a ModelService serving another's version)."""


def by_label(label: str) -> Index:
    """Index objects by the value of one label, in their own namespace."""

    def keys(obj: Manifest) -> list[Key]:
        meta = obj["metadata"]
        value = (meta.get("labels") or {}).get(label)
        return [(meta.get("namespace", ""), value)] if value else []

    return keys


def without_managed_fields(obj: Manifest) -> Manifest:
    """The whole object but `managedFields`, of which only a mark of fields Conch still
    has to hand to its server-side apply is kept (`conch.ownership`)."""
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k != "managedFields"}
    if mark := ownership.kept(obj.get("metadata", {}).get("managedFields") or []):
        meta["managedFields"] = mark
    return {**obj, "metadata": meta}


def _ignore(before: Manifest | None, after: Manifest | None) -> None:
    return None


class Informer:
    """The objects of one kind that match `selector`, in `namespaces` (None: all).

    Each object is kept whole but its managedFields, serialized (a few KiB of JSON instead of
    a tree of Python objects ten times its size) and parsed again on read; objects are found
    by namespace and through an index: by the value of a label (`index` a label name) or by
    the keys an `Index` function gives each object, so a reconcile's reads do not grow with
    the number of services. Cluster-scoped objects live under namespace "".
    """

    def __init__(
        self,
        api: Rest,
        kind: Kind,
        selector: str,
        namespaces: Iterable[str] | None = None,
        on_change: Change = _ignore,
        timeout: int = 300,
        index: str | Index | None = None,
    ) -> None:
        self.api = api
        self.kind = kind
        self.selector = selector
        self.scopes: list[str | None] = list(namespaces) if namespaces else [None]
        self.on_change = on_change
        self.timeout = timeout
        self.index_label = index if isinstance(index, str) else None
        """The label `select` finds objects by through the index, if `index` is one."""
        self.index = by_label(index) if isinstance(index, str) else index
        self._objects: dict[str, dict[str, bytes]] = {}
        """namespace -> name -> the kept object, serialized"""
        self._index: dict[Key, set[Key]] = {}
        """index key -> (namespace, name) of the objects found under it"""
        self._lock = threading.Lock()
        self._synced = [threading.Event() for _ in self.scopes]
        self.served = False
        """Whether the API server serves this kind (an optional CRD may come and go): set by
        each list, so a reconcile never asks discovery."""
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- reading -----------------------------------------------------------------------

    def get(self, namespace: str, name: str) -> Manifest | None:
        with self._lock:
            blob = self._objects.get(namespace, {}).get(name)
        return None if blob is None else _load(blob)

    def holds(self, namespace: str, name: str) -> bool:
        """Whether the object is here (without reading it back from its serialized form)."""
        with self._lock:
            return name in self._objects.get(namespace, {})

    def select(self, namespace: str, labels: dict[str, str]) -> list[Manifest]:
        """Objects in `namespace` carrying every label of `labels`."""
        with self._lock:
            objects = self._objects.get(namespace, {})
            if self.index_label is not None and self.index_label in labels:
                found_at = self._index.get((namespace, labels[self.index_label]), set())
                blobs = [objects[n] for _, n in sorted(found_at)]
            else:
                blobs = list(objects.values())
        found = (_load(b) for b in blobs)
        return [
            obj
            for obj in found
            if all(obj["metadata"].get("labels", {}).get(k) == v for k, v in labels.items())
        ]

    def indexed(self, namespace: str, value: str) -> list[Manifest]:
        """The objects `index` found under (namespace, value), by namespace and name."""
        with self._lock:
            found_at = sorted(self._index.get((namespace, value), set()))
            blobs = [self._objects[ns][name] for ns, name in found_at]
        return [_load(b) for b in blobs]

    def values(self) -> list[Manifest]:
        """Every object, in every namespace."""
        with self._lock:
            blobs = [b for objects in self._objects.values() for b in objects.values()]
        return [_load(b) for b in blobs]

    def __len__(self) -> int:
        with self._lock:
            return sum(len(objects) for objects in self._objects.values())

    # -- keeping -----------------------------------------------------------------------

    def _put(self, obj: Manifest) -> Manifest | None:
        """Keep `obj` (already trimmed); the version it replaces. Holds the lock."""
        meta = obj["metadata"]
        namespace, name = meta.get("namespace", ""), meta["name"]
        objects = self._objects.setdefault(namespace, {})
        blob = objects.get(name)
        before = None if blob is None else _load(blob)
        if before is not None:
            self._unindex(before)
        objects[name] = _dump(obj)
        if self.index is not None:
            for key in self.index(obj):
                self._index.setdefault(key, set()).add((namespace, name))
        return before

    def _pop(self, namespace: str, name: str) -> Manifest | None:
        """Forget an object; the version it was. Holds the lock."""
        blob = self._objects.get(namespace, {}).pop(name, None)
        if blob is None:
            return None
        before = _load(blob)
        self._unindex(before)
        return before

    def _unindex(self, obj: Manifest) -> None:
        if self.index is None:
            return
        meta = obj["metadata"]
        at = (meta.get("namespace", ""), meta["name"])
        for key in self.index(obj):
            found_at = self._index.get(key)
            if found_at is not None:
                found_at.discard(at)
                if not found_at:
                    del self._index[key]

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
                self.served = True
                self._synced[index].set()
                while not self._stop.is_set() and version:
                    version = self._watch(path, version)
            except RestError as error:
                if self._stop.is_set():
                    return
                if error.status != 404:
                    log.warning("watch %s: %s; listing again", path, error)
                    self._stop.wait(1.0)
                    continue
                # the kind is not served (an optional CRD): nothing to hold; look again later
                self.served = False
                self._synced[index].set()
                self._stop.wait(30.0)
            except Exception as error:  # the API server went away, or answered oddly
                if self._stop.is_set():
                    return
                log.warning("watch %s: %s; listing again", path, error)
                self._stop.wait(1.0)

    def _trim(self, obj: Manifest) -> Manifest:
        return {
            **without_managed_fields(obj),
            "apiVersion": self.kind.api_version,
            "kind": self.kind.kind,
        }

    def _list(self, path: str, namespace: str | None) -> str:
        """List in pages (a restart over 1,000 services never holds every object twice);
        every page comes from the first page's snapshot."""
        query = [("labelSelector", self.selector)] if self.selector else []
        query.append(("limit", str(PAGE)))
        listed: dict[tuple[str, str], Manifest] = {}
        token = ""
        while True:
            _, page = self.api.request(
                "GET", path, [*query, ("continue", token)] if token else query, timeout=60
            )
            for item in page.get("items", []):
                meta = item["metadata"]
                listed[(meta.get("namespace", ""), meta["name"])] = self._trim(item)
            token = page["metadata"].get("continue") or ""
            if not token:
                break
        changes: list[tuple[Manifest | None, Manifest | None]] = []
        with self._lock:
            for ns, objects in list(self._objects.items()):
                if namespace is None or ns == namespace:
                    for name in [n for n in objects if (ns, n) not in listed]:
                        changes.append((self._pop(ns, name), None))
            changes += [(self._put(obj), obj) for obj in listed.values()]
        for before, after in changes:
            self.on_change(before, after)
        return str(page["metadata"]["resourceVersion"])

    def _watch(self, path: str, version: str) -> str | None:
        """Follow changes from `version`; the version to resume from, or None to relist."""
        query: Query = [("labelSelector", self.selector)] if self.selector else []
        query += [
            ("watch", "true"),
            ("resourceVersion", version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(self.timeout)),
        ]
        lines = self.api.stream(path, query, self.timeout + 30)
        try:
            for line in lines:
                if self._stop.is_set():
                    return None
                event = json.loads(line)
                kind, obj = event["type"], event["object"]
                if kind == "ERROR":
                    return None  # 410 Gone and friends: list again
                version = obj["metadata"].get("resourceVersion", version)
                if kind == "BOOKMARK":
                    continue
                trimmed = self._trim(obj)
                meta = obj["metadata"]
                with self._lock:
                    if kind == "DELETED":
                        before, after = self._pop(meta.get("namespace", ""), meta["name"]), None
                    else:
                        before, after = self._put(trimmed), trimmed
                if before is not None or after is not None:
                    self.on_change(before, after)
        finally:
            lines.close()
        return version


def _dump(obj: Manifest) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _load(blob: bytes) -> Manifest:
    loaded: Manifest = json.loads(blob)
    return loaded


class Watched:
    """Every informer the controller reads from: Conch's owned kinds (by the managed-by
    label, indexed by the service they belong to), ModelVersions, ModelAccessGrants,
    CatalogEntries (cluster-scoped: every namespace's, whoever wrote them), and
    ModelServices, indexed by the given index (the versions each uses, for ModelVersion
    status.usedBy and the catalog's servedBy). A reconcile reads its ModelService here."""

    def __init__(
        self,
        api: Rest,
        owned: dict[str, Kind],
        versions: Kind,
        services: tuple[Kind, Index],
        selector: str,
        namespaces: Iterable[str] | None = None,
        grants: Kind | None = None,
        catalog: Kind | None = None,
    ) -> None:
        self.owned = {
            name: Informer(api, kind, selector, namespaces, index=SERVICE_LABEL)
            for name, kind in owned.items()
        }
        self.versions = Informer(api, versions, "", namespaces)
        kind, index = services
        self.services = Informer(api, kind, "", namespaces, index=index)
        self.grants = Informer(api, grants, "", namespaces) if grants else None
        self.catalog = Informer(api, catalog, "") if catalog else None

    @property
    def streams(self) -> int:
        """Connections the watches hold open at once: one per kind and namespace watched."""
        return sum(len(informer.scopes) for informer in self._all())

    def _all(self) -> list[Informer]:
        optional = [i for i in (self.grants, self.catalog) if i is not None]
        return [*self.owned.values(), self.versions, self.services, *optional]

    def start(
        self,
        on_owned: Change = _ignore,
        on_service: Change = _ignore,
        on_version: Change = _ignore,
        on_grant: Change = _ignore,
        on_catalog: Change = _ignore,
    ) -> None:
        """Start watching; the callbacks are called (from the watch threads) for every change
        of an owned object, a ModelService, a ModelVersion, a ModelAccessGrant (a
        revocation reaches the services that use it without a restart) and a CatalogEntry
        (one edited by hand, or left over from a version gone while the operator was down)."""
        for informer in self.owned.values():
            informer.on_change = on_owned
        self.services.on_change = on_service
        self.versions.on_change = on_version
        if self.grants is not None:
            self.grants.on_change = on_grant
        if self.catalog is not None:
            self.catalog.on_change = on_catalog
        for informer in self._all():
            informer.start()

    def wait_synced(self, timeout: float = 120) -> bool:
        return all(i.wait_synced(timeout) for i in self._all())

    def stop(self) -> None:
        for informer in self._all():
            informer.stop()
