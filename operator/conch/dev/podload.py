"""A bounded load loop against the ready pods of a ModelService on the real node.

There is no kube-proxy in the sandbox, so this does what it would do for the Service: each
request goes to one of the Service's ready, not terminating pods, picked uniformly, so with
the `replicas` router the split users get is the ready-replica ratio the operator reports.
Only pod addresses on the node's bridge are dialled (checked by `dialable`). Used by
`conch dev demo` (a rollout under live traffic) and the real-node rollout test.
"""

from __future__ import annotations

import json
import random
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from conch.builders.meta import VERSION_LABEL
from conch.dev.loadloop import LoadLoop

__all__ = ["Endpoint", "PodLoad", "infer_body", "ready_endpoints"]

SENDERS = 2
"""Requests in flight at once: enough to keep two CPU pods busy on a 2-core machine."""


@dataclass(frozen=True)
class Endpoint:
    """One ready serving pod: its address on the bridge and the version it serves."""

    ip: str
    pod: str
    version: str


def ready_endpoints(pods: Iterable[client.V1Pod], dialable: Callable[[str], str]) -> list[Endpoint]:
    """What an EndpointSlice would list as ready: Ready, running, not being deleted, with
    an address (checked to be on the bridge)."""
    out = []
    for pod in pods:
        conditions = {c.type: c.status for c in pod.status.conditions or []}
        if pod.metadata.deletion_timestamp or conditions.get("Ready") != "True":
            continue
        if not pod.status.pod_ip:
            continue
        version = (pod.metadata.labels or {}).get(VERSION_LABEL, "")
        out.append(Endpoint(dialable(pod.status.pod_ip), pod.metadata.name, version))
    return sorted(out, key=lambda e: e.pod)


def infer_body(inputs: dict[str, Any]) -> bytes:
    """A KServe v2 JSON request for named numpy inputs (Triton's datatype names)."""
    names = {"float32": "FP32", "int64": "INT64", "int32": "INT32", "float64": "FP64"}
    tensors = [
        {
            "name": name,
            "datatype": names[str(array.dtype)],
            "shape": list(array.shape),
            "data": array.flatten().tolist(),
        }
        for name, array in inputs.items()
    ]
    return json.dumps({"inputs": tensors}).encode()


class PodLoad(LoadLoop):
    """Requests from SENDERS threads, bounded in time and count, each to a random ready
    pod of `selector` in `namespace` (the list refreshed every 0.3 s); counts successes and
    failures per version and per pod."""

    def __init__(
        self,
        core: client.CoreV1Api,
        namespace: str,
        selector: dict[str, str],
        dialable: Callable[[str], str],
        path: str,
        body: bytes,
        max_seconds: float = 300,
        max_requests: int = 20_000,
    ) -> None:
        self._core, self._namespace = core, namespace
        self._selector = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        self._dialable, self._path, self._body = dialable, path, body
        self.endpoints: list[Endpoint] = []
        self.ok: Counter[str] = Counter()
        """Successful requests per version."""
        self.failed: Counter[str] = Counter()
        self.per_pod: Counter[str] = Counter()
        """Successful requests per pod name."""
        super().__init__(SENDERS, max_seconds, max_requests)

    def refresh(self) -> None:
        try:
            pods = self._core.list_namespaced_pod(
                self._namespace, label_selector=self._selector
            ).items
            self.endpoints = ready_endpoints(pods, self._dialable)
        except Exception:  # a failed list keeps the last endpoints
            pass

    def send_one(self) -> None:
        endpoints = self.endpoints
        if not endpoints:
            self.pause(0.1)
            return
        target = random.choice(endpoints)
        request = urllib.request.Request(
            f"http://{target.ip}:8000{self._path}",
            data=self._body,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
            ok = True
        except OSError:
            ok = False
        with self._lock:
            if ok:
                self.ok[target.version] += 1
                self.per_pod[target.pod] += 1
            else:
                self.failed[target.version] += 1
        self.pause(0.01)
