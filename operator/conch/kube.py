"""Kubernetes I/O: server-side apply, reads, deletes, status patches and Events.

The operator's verbs over `conch.rest`. Its RestError is translated here into
`conch.errors`, so nothing above this module sees an HTTP status it must interpret.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

from conch import ownership
from conch.api import GROUP, VERSION
from conch.builders.meta import FIELD_MANAGER, Manifest
from conch.errors import ApiError, InvalidSpec
from conch.rest import Rest, RestError

REPORTING_CONTROLLER = "serving.conch.dev/conch-operator"
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Kind:
    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str, name: str | None = None, subresource: str | None = None) -> str:
        """The request path; every caller-given segment is escaped, so a name can never
        climb out of its namespace (`../../other/...` stays one segment). A cluster-scoped
        kind ignores `namespace`."""
        prefix = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        parts = [prefix, "namespaces", _segment(namespace)] if self.namespaced else [prefix]
        parts.append(self.plural)
        if name:
            parts.append(_segment(name))
        if subresource:
            parts.append(subresource)
        return "/".join(parts)


def _segment(value: str) -> str:
    if value in ("", ".", ".."):
        raise InvalidSpec(f"{value!r} is not an object name")
    return quote(value, safe="")


MODEL_SERVICE = Kind(f"{GROUP}/{VERSION}", "ModelService", "modelservices")
MODEL_VERSION = Kind(f"{GROUP}/{VERSION}", "ModelVersion", "modelversions")
MODEL_ACCESS_GRANT = Kind(f"{GROUP}/{VERSION}", "ModelAccessGrant", "modelaccessgrants")
POD = Kind("v1", "Pod", "pods")
SECRET = Kind("v1", "Secret", "secrets")
CATALOG_ENTRY = Kind(f"{GROUP}/{VERSION}", "CatalogEntry", "catalogentries", namespaced=False)
OWNED = {
    k.kind: k
    for k in (
        Kind("v1", "Service", "services"),
        Kind("apps/v1", "Deployment", "deployments"),
        Kind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets"),
        Kind("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies"),
        Kind("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
        Kind("monitoring.coreos.com/v1", "ServiceMonitor", "servicemonitors"),
        Kind("gateway.networking.k8s.io/v1", "HTTPRoute", "httproutes"),
    )
}
WRITTEN = {**OWNED, CATALOG_ENTRY.kind: CATALOG_ENTRY, SECRET.kind: SECRET}
"""Every kind the operator applies and deletes: a ModelService's children, the catalog's
mirror of shared ModelVersions, and endpoint key Secrets (read by name, never watched)."""


class Applied(enum.Enum):
    """What a server-side apply did (KServe's Create / Update / Existed)."""

    CREATED = "Created"
    UPDATED = "Updated"
    UNCHANGED = "Unchanged"


def reporting_instance() -> str:
    """Who posts our Events: the pod's name (the chart passes POD_NAME, which is also the
    leader's identity), else the host's name. A pod on the node's network (the sandbox's
    hostNetwork operator) would otherwise report the node's host name."""
    return (os.environ.get("POD_NAME") or socket.gethostname())[:128]


CONTENT_ERRORS = (
    "failed to create typed patch object",
    "field not declared in schema",
    "cannot convert",
)
"""Markers of a 500 that the object's content caused (server-side apply of an unknown field
in a pass-through object such as affinity): asking again cannot help."""


def refused_for_content(status: int, message: str) -> bool:
    """Whether the API refused the object itself (400, 422, or a 500 caused by its content)."""
    return status in (400, 422) or (
        status == 500 and any(marker in message for marker in CONTENT_ERRORS)
    )


def retryable(status: int) -> bool:
    """Whether asking again may succeed: conflicts, throttling, timeouts and server errors;
    not the other 4xx answers (forbidden, not found, gone, too large, ...)."""
    return status in (0, 408, 409, 425, 429) or status >= 500


Observer = Callable[[str, str, str, float], None]
"""Told of every request: (verb, resource, HTTP status or "connection", seconds)."""


def _ignore(verb: str, resource: str, code: str, seconds: float) -> None:
    pass


class Kube:
    """The operator's verbs, typed. `observe` feeds the operator metrics."""

    def __init__(self, api: Rest, observe: Observer = _ignore) -> None:
        self.api = api
        self._observe = observe
        self._counting = threading.local()
        self._count_lock = threading.Lock()

    @contextlib.contextmanager
    def counting(self) -> Iterator[dict[str, int]]:
        """Count this thread's requests inside the block: {"read": n, "write": m}."""
        counts = {"read": 0, "write": 0}
        self._counting.counts = counts
        try:
            yield counts
        finally:
            self._counting.counts = None

    def carried(self, fn: Callable[[T], R]) -> Callable[[T], R]:
        """`fn`, counted into this thread's `counting` block from whichever thread runs it
        (a reconcile's requests that go out together)."""
        counts = getattr(self._counting, "counts", None)

        def run(arg: T) -> R:
            self._counting.counts = counts
            try:
                return fn(arg)
            finally:
                self._counting.counts = None

        return run

    def _call(
        self,
        verb: str,
        resource: str,
        method: str,
        path: str,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> tuple[Any, int]:
        """(the answer, its HTTP status)."""
        counts = getattr(self._counting, "counts", None)
        if counts is not None:
            with self._count_lock:  # `carried` blocks share one dict across threads
                counts["read" if method == "GET" or "dryRun" in dict(query or []) else "write"] += 1
        started = time.perf_counter()
        try:
            status, data = self.api.request(
                method, path, query, body, content_type=content_type, accept=accept
            )
        except RestError as error:
            code = str(error.status) if error.status else "connection"
            self._observe(verb, resource, code, time.perf_counter() - started)
            if error.status and refused_for_content(error.status, error.message):
                raise InvalidSpec(error.message) from None
            raise ApiError(
                f"{verb} {path}: {error.message}", error.status, temporary=retryable(error.status)
            ) from None
        self._observe(verb, resource, str(status), time.perf_counter() - started)
        return data, status

    def get(self, kind: Kind, namespace: str, name: str) -> Manifest | None:
        try:
            return dict(self._call("get", kind.plural, "GET", kind.path(namespace, name))[0])
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    def get_metadata(self, kind: Kind, namespace: str, name: str) -> Manifest | None:
        """Only the object's metadata (PartialObjectMetadata): how Secrets are read, so
        their data never reaches the operator."""
        try:
            return dict(
                self._call(
                    "get",
                    kind.plural,
                    "GET",
                    kind.path(namespace, name),
                    accept="application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
                )[0]
            )
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    def list(self, kind: Kind, namespace: str, selector: dict[str, str]) -> list[Manifest]:
        query = (
            [("labelSelector", ",".join(f"{k}={v}" for k, v in selector.items()))]
            if selector
            else []
        )
        result, _ = self._call("list", kind.plural, "GET", kind.path(namespace), query=query)
        return list(result.get("items", []))

    def dry_run(self, obj: Manifest) -> bool:
        """Server-side apply with dryRun=All: everything the API server would check (schema,
        validation, admission), nothing stored. InvalidSpec if it would refuse `obj`; True
        when it would create `obj` (201: the name was free)."""
        _, status = self._apply_call(obj, dry_run=True)
        return status == 201

    def _apply_call(self, obj: Manifest, dry_run: bool) -> tuple[Any, int]:
        kind = WRITTEN[obj["kind"]]
        meta = obj["metadata"]
        query = [("fieldManager", FIELD_MANAGER), ("force", "true")]
        if dry_run:
            query.append(("dryRun", "All"))
        result, status = self._call(
            "dry_run" if dry_run else "apply",
            kind.plural,
            "PATCH",
            kind.path(meta.get("namespace", ""), meta["name"]),
            body=obj,
            query=query,
            content_type="application/apply-patch+yaml",
        )
        return result, int(status)

    def apply(self, obj: Manifest, observed: Manifest | None = None) -> tuple[Applied, Manifest]:
        """Server-side apply with Conch's field manager; conflicts are forced (we own these).

        `observed` is the object as the caller last saw it (None: not there). The apply is
        then conditional on its resourceVersion, so what it reports is exact: Created is the
        201, Updated a resourceVersion that moved (the server wrote), Unchanged one that did
        not (a no-op apply writes nothing). If the object changed since it was observed, the
        API answers 409 Conflict: a temporary error, the reconcile runs again on what is
        there now. An object that exists but was not observed (a race with its creation) is
        reported Updated: whether the apply changed it cannot be told.
        """
        seen = ((observed or {}).get("metadata") or {}).get("resourceVersion")
        if seen is not None:
            obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": seen}}
        result, status = self._apply_call(obj, dry_run=False)
        if status == 201:
            return Applied.CREATED, dict(result)
        if seen is not None and result["metadata"].get("resourceVersion") == seen:
            return Applied.UNCHANGED, dict(result)
        return Applied.UPDATED, dict(result)

    def create(self, obj: Manifest) -> Manifest | None:
        """POST `obj` with Conch's field manager: create-only, so a name someone holds is
        never written (None: it exists). Unknown fields are refused, as an apply refuses
        them. The fields are then under an Update entry: `hand_over` makes them applied."""
        kind = WRITTEN[obj["kind"]]
        query = [("fieldManager", FIELD_MANAGER), ("fieldValidation", "Strict")]
        path = kind.path(obj["metadata"].get("namespace", ""))
        try:
            result, _ = self._call("create", kind.plural, "POST", path, body=obj, query=query)
        except ApiError as error:
            if error.status == 409:
                return None
            raise
        return dict(result)

    def hand_over(self, obj: Manifest) -> Manifest | None:
        """Make the fields a `create` wrote Conch's server-side apply's own
        (`conch.ownership`); the object as it is now (None: gone). `obj` is the object as
        last read (with its managedFields); if its entries moved since, it is read again."""
        kind = WRITTEN[obj["kind"]]
        namespace, name = obj["metadata"].get("namespace", ""), obj["metadata"]["name"]
        current: Manifest | None = obj
        for _ in range(3):
            if current is None:
                return None
            ops = ownership.handover(current["metadata"].get("managedFields") or [])
            if not ops:
                return current
            try:
                result, _ = self._call(
                    "hand_over",
                    kind.plural,
                    "PATCH",
                    kind.path(namespace, name),
                    body=ops,
                    query=[("fieldManager", FIELD_MANAGER)],
                    content_type="application/json-patch+json",
                )
                return dict(result)
            except InvalidSpec:  # a test of the patch failed: read the entries again
                current = self.get(kind, namespace, name)
        raise ApiError(f"hand_over {name}: its managedFields kept moving", 409, temporary=True)

    def delete(self, obj: Manifest) -> None:
        kind = WRITTEN[obj["kind"]]
        meta = obj["metadata"]
        body = {"preconditions": {"uid": meta["uid"]}, "propagationPolicy": "Background"}
        path = kind.path(meta.get("namespace", ""), meta["name"])
        try:
            self._call("delete", kind.plural, "DELETE", path, body=body)
        except ApiError as error:
            if error.status not in (404, 409):
                raise

    def patch_status(
        self, kind: Kind, namespace: str, name: str, status: dict[str, Any]
    ) -> Manifest:
        """A JSON merge patch of the status; the object as written."""
        result, _ = self._call(
            "patch_status",
            kind.plural,
            "PATCH",
            kind.path(namespace, name, "status"),
            body={"status": status},
            content_type="application/merge-patch+json",
        )
        return dict(result)

    def patch(self, kind: Kind, namespace: str, name: str, body: dict[str, Any]) -> Manifest:
        """A JSON merge patch (e.g. removing an annotation with a null); the object as
        written."""
        result, _ = self._call(
            "patch",
            kind.plural,
            "PATCH",
            kind.path(namespace, name),
            body=body,
            content_type="application/merge-patch+json",
        )
        return dict(result)

    def event(self, regarding: Manifest, type_: str, reason: str, action: str, note: str) -> None:
        """Post an events.k8s.io/v1 Event about `regarding`."""
        meta = regarding["metadata"]
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta['name']}.{uuid.uuid4().hex[:16]}",
                "namespace": meta["namespace"],
            },
            "eventTime": now,
            "reportingController": REPORTING_CONTROLLER,
            "reportingInstance": reporting_instance(),
            "action": action,
            "reason": reason,
            "note": note[:1024],
            "type": type_,
            "regarding": {
                "apiVersion": regarding["apiVersion"],
                "kind": regarding["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
        }
        self._call(
            "create",
            "events",
            "POST",
            f"/apis/events.k8s.io/v1/namespaces/{_segment(meta['namespace'])}/events",
            body=body,
        )
