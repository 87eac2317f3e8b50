"""Endpoint keys: a key per consumer, checked by the gate in front of Triton. Pure.

Triton's restricted-API options take one `header=value` per API group (a second value for
the same group is a start-up error, "can not be specified in multiple config groups",
checked on tritonserver 2.51), so Triton can hold one key per server. Per-consumer keys
need something in front of it: the gate (`runtime/gate`, a static Go binary in the runtime
image) runs beside Triton in each serving pod, takes over the HTTP and gRPC ports, checks
the `conch-endpoint-key` header against sha256 hashes and proxies to Triton on 127.0.0.1.

The operator keeps, per ModelService with `spec.access.consumers`:
- a Secret per consumer (`key_secret_name`) holding its key, for the service's owners to
  hand to that consumer: written once, rewritten on rotation, deleted on revocation;
- one gate Secret (`gate_secret_name`) holding only hashes, mounted into the gate, which
  reloads it when the kubelet updates the volume. It is also the operator's record of the
  keys it issued, so a reconcile reads one Secret, never the keys themselves.
`spec.access.keySecretRef` (a key the owner writes) is the gate's degenerate case: the
gate reads that Secret's `key` from its own volume.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from conch.api import ModelService
from conch.builders.meta import Manifest, controlled_by, metadata, version_child_name
from conch.errors import NameConflict

HEADER: Final = "conch-endpoint-key"
"""The HTTP header (and gRPC metadata key) callers send their key in."""
SECRET_KEY: Final = "key"
"""The data key holding a key: in each consumer Secret and in the owner's keySecretRef."""
HASHES_KEY: Final = "hashes.json"
"""The gate Secret's data key: `{"consumers": {name: sha256 hex}}`."""
CONSUMER_LABEL: Final = "serving.conch.dev/consumer"
ROTATE_ANNOTATION: Final = "serving.conch.dev/rotate-keys"
"""Request: comma-separated consumers whose keys to replace (`*`: all). Removed once done."""
TRITON_HTTP_PORT: Final = 18000
TRITON_GRPC_PORT: Final = 18001
"""Where Triton listens, on 127.0.0.1 only, when the gate is in front of it."""


def gate_on(svc: ModelService) -> bool:
    """Whether the service's pods run the gate: consumers listed (even none) or an owner key."""
    access = svc.spec.access
    return access is not None and (
        access.consumers is not None or access.key_secret_ref is not None
    )


def consumers(svc: ModelService) -> list[str]:
    access = svc.spec.access
    return [c.name for c in (access.consumers or [])] if access else []


def key_secret_name(service: str, consumer: str) -> str:
    """A consumer's key Secret: `<svc>-key-<consumer>-<hash>`. The hash of the pair keeps two
    services' names apart (`a`+`key-b-c` and `a-key-b`+`c` would otherwise meet)."""
    return version_child_name(service, f"key-{consumer}")


def gate_secret_name(service: str) -> str:
    """The gate's hashes Secret (`key-` never starts it, so no consumer's name meets it)."""
    return version_child_name(service, "gate")


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class KeyChanges:
    """What a reconcile does to the keys, in order: write `issue` (new or rotated keys),
    delete `revoke` (consumers no longer listed), then write (or delete) the gate Secret,
    so a consumer's key is in its Secret before its hash is admitted, and a revoked
    consumer's Secret is gone before the gate forgets it (a retry finds it in the gate)."""

    service: str = ""
    issue: tuple[Manifest, ...] = ()
    revoke: tuple[str, ...] = ()
    """Consumers whose Secrets to delete (if they are this service's)."""
    gate: Manifest | None = None
    delete_gate: bool = False
    rotated: tuple[str, ...] = ()
    """Consumers whose key was replaced at a request (for the Event)."""

    @property
    def empty(self) -> bool:
        return not (self.issue or self.revoke or self.gate or self.delete_gate)

    def revoked_secrets(self) -> list[str]:
        return [key_secret_name(self.service, c) for c in self.revoke]


def issued(svc: ModelService, gate: Manifest | None) -> dict[str, str]:
    """{consumer: hash} the gate Secret records; NameConflict when the name is someone
    else's (the operator never writes or reads keys into an object it does not control)."""
    if gate is None:
        return {}
    if not controlled_by(gate, svc.metadata.uid):
        raise NameConflict(
            f"Secret {gate['metadata']['name']} already exists and belongs to someone else; "
            "Conch does not take over objects it did not create"
        )
    raw = (gate.get("data") or {}).get(HASHES_KEY, "")
    try:
        found = json.loads(base64.b64decode(raw) or b"{}").get("consumers", {})
    except (ValueError, binascii.Error, AttributeError):
        return {}  # rewritten by hand into nonsense: every key is issued again
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def requested(annotations: Mapping[str, str]) -> set[str]:
    """The consumers a rotation request names."""
    value = annotations.get(ROTATE_ANNOTATION)
    return {p.strip() for p in value.split(",") if p.strip()} if value else set()


def plan(
    svc: ModelService,
    gate: Manifest | None,
    fresh: Mapping[str, str],
    rotate: set[str],
    *,
    issue: bool = True,
) -> KeyChanges:
    """The key changes that make the Secrets match `spec.access.consumers`. `gate` is the
    gate Secret as read (None: absent), `fresh` a new random key per listed consumer
    (drawn by the caller: this stays pure), `rotate` the consumers to re-key (`*`: all).
    `issue=False` (a refused spec): only revocations, nothing new is written."""
    before = issued(svc, gate)
    if not gate_on(svc):
        return KeyChanges(
            service=svc.metadata.name, revoke=tuple(sorted(before)), delete_gate=gate is not None
        )
    wanted = consumers(svc)
    renew = [c for c in wanted if c not in before or c in rotate or "*" in rotate]
    if not issue:
        renew = []
    hashes = {c: before[c] for c in wanted if c not in renew and c in before}
    hashes |= {c: digest(fresh[c]) for c in renew}
    return KeyChanges(
        service=svc.metadata.name,
        issue=tuple(consumer_secret(svc, c, fresh[c]) for c in renew),
        revoke=tuple(sorted(c for c in before if c not in wanted)),
        gate=gate_secret(svc, hashes)
        if (gate is None and issue) or (gate is not None and hashes != before)
        else None,
        rotated=tuple(c for c in renew if c in before),
    )


def _secret(svc: ModelService, name: str, data: dict[str, str], labels: dict[str, str]) -> Manifest:
    meta = metadata(svc, name)
    meta["labels"] = {**meta["labels"], **labels}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta,
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def consumer_secret(svc: ModelService, consumer: str, key: str) -> Manifest:
    """The Secret the service's owners hand to `consumer` (its `key` entry)."""
    return _secret(
        svc,
        key_secret_name(svc.metadata.name, consumer),
        {SECRET_KEY: key},
        {CONSUMER_LABEL: consumer},
    )


def gate_secret(svc: ModelService, hashes: Mapping[str, str]) -> Manifest:
    """The gate's Secret: hashes only, never a key."""
    body = json.dumps({"consumers": dict(sorted(hashes.items()))}, sort_keys=True)
    return _secret(svc, gate_secret_name(svc.metadata.name), {HASHES_KEY: body}, {})


def mentions_gate(deployment: Manifest, service: str) -> bool:
    """Whether a running Deployment mounts the gate Secret (so the gate Secret is read
    even after spec.access stopped asking for it, to revoke what it records)."""
    volumes: list[dict[str, Any]] = (
        deployment.get("spec", {}).get("template", {}).get("spec", {}).get("volumes") or []
    )
    name = gate_secret_name(service)
    return any((v.get("secret") or {}).get("secretName") == name for v in volumes)
