"""Names, labels and owner references shared by every owned object."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from conch.api import API_VERSION, ModelService, ModelVersion

SERVICE_LABEL = "serving.conch.dev/service"
VERSION_LABEL = "serving.conch.dev/version"
MANAGER = "conch-operator"
MANAGED_BY = "app.kubernetes.io/managed-by"
FIELD_MANAGER = "conch"

Manifest = dict[str, Any]


def version_child_name(service: str, version: str) -> str:
    """The name of a per-version child (Deployment, per-version Service) of `service`.

    `service-version` alone is ambiguous (`a-b`+`c` and `a`+`b-c` meet), so a hash of the
    unambiguous pair `service/version` always ends it; dots become dashes so the same name
    is valid for a Service (DNS-1035) as well as a Deployment.
    """
    digest = hashlib.sha256(f"{service}/{version}".encode()).hexdigest()[:8]
    readable = f"{service}-{version}".replace(".", "-")[: 63 - 9].rstrip("-")
    return f"{readable}-{digest}"


def label_value(value: str) -> str:
    """A valid label value: at most 63 characters, alphanumeric at both ends."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", value)[:63]
    return cleaned.strip("-._")


def selector(svc: ModelService, mv_name: str | None = None) -> dict[str, str]:
    """Pods of the service (all versions), or of one version when `mv_name` is given."""
    labels = {SERVICE_LABEL: svc.metadata.name}
    if mv_name is not None:
        labels[VERSION_LABEL] = mv_name
    return labels


def labels(svc: ModelService, mv: ModelVersion | None = None) -> dict[str, str]:
    out = {
        "app.kubernetes.io/name": label_value(mv.spec.model if mv else svc.metadata.name),
        "app.kubernetes.io/instance": svc.metadata.name,
        "app.kubernetes.io/component": "inference-server",
        "app.kubernetes.io/part-of": "conch",
        MANAGED_BY: MANAGER,
        SERVICE_LABEL: svc.metadata.name,
    }
    if mv is not None:
        out["app.kubernetes.io/version"] = label_value(mv.spec.version)
        out[VERSION_LABEL] = mv.metadata.name
    return out


def owner_reference(svc: ModelService) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "ModelService",
        "name": svc.metadata.name,
        "uid": svc.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(
    svc: ModelService, name: str, mv: ModelVersion | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": svc.metadata.namespace,
        "labels": labels(svc, mv),
        "ownerReferences": [owner_reference(svc)],
        **extra,
    }


def controlled_by(obj: Manifest, uid: str | None) -> bool:
    """Whether `obj`'s controller owner reference is the object with `uid`: the one test
    of "ours" before Conch writes or deletes anything."""
    return uid is not None and any(
        ref.get("controller") and ref.get("uid") == uid
        for ref in obj.get("metadata", {}).get("ownerReferences") or []
    )
