"""Pure builders: (ModelService, ModelVersion, settings) -> the manifests Conch owns. No I/O."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from conch.api import ModelService, ModelVersion
from conch.builders import deployment, hpa, networkpolicy, pdb, service, servicemonitor
from conch.builders.deployment import PodSettings
from conch.builders.meta import VERSION_LABEL, Manifest, controlled_by

__all__ = [
    "APPLIED_ANNOTATION",
    "VERSION_LABEL",
    "Capabilities",
    "Manifest",
    "PodSettings",
    "Served",
    "controlled_by",
    "desired",
    "differs",
    "key",
    "single",
    "stale",
]


@dataclass(frozen=True)
class Capabilities:
    """Optional APIs found in the cluster; owned kinds whose CRD is absent are skipped."""

    service_monitor: bool = False
    http_route: bool = False


@dataclass(frozen=True)
class Served:
    """One ModelVersion the service runs, and its replicas."""

    mv: ModelVersion
    replicas: int
    credentials_hosts: tuple[str, ...] = ()
    """Where the pull may send the artifact credentials (checked by `conch.artifacts`)."""


def desired(
    svc: ModelService,
    served: list[Served],
    routing: list[Manifest],
    settings: PodSettings,
    capabilities: Capabilities,
) -> list[Manifest]:
    """Every object the ModelService should own, in apply order: the router's objects, a
    Deployment per served version, then the objects shared by all versions."""
    objects = list(routing)
    objects += [
        deployment.build(svc, s.mv, settings, s.replicas, s.credentials_hosts) for s in served
    ]
    if pdb.needed(svc, len(served)):
        objects.append(pdb.build(svc))
    objects.append(networkpolicy.build(svc, settings.metrics_scrape_namespaces))
    if autoscaler := hpa.build(svc):
        objects.append(autoscaler)
    if capabilities.service_monitor:
        objects.append(servicemonitor.build(svc))
    return [stamped(obj) for obj in objects]


APPLIED_ANNOTATION = "serving.conch.dev/applied"
"""A digest of the manifest Conch last applied to an object: a changed spec that only
removes a field is still seen as a change."""


def stamped(obj: Manifest) -> Manifest:
    """`obj` with the digest of its own content in APPLIED_ANNOTATION."""
    digest = hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]
    meta = obj["metadata"]
    return {
        **obj,
        "metadata": {
            **meta,
            "annotations": {**meta.get("annotations", {}), APPLIED_ANNOTATION: digest},
        },
    }


def _within(wanted: Any, observed: Any) -> bool:
    """Whether every field of `wanted` holds the same value in `observed` (which may have
    more: defaults, status, other managers' fields)."""
    if isinstance(wanted, dict):
        return isinstance(observed, dict) and all(
            k in observed and _within(v, observed[k]) for k, v in wanted.items()
        )
    if isinstance(wanted, list):
        return (
            isinstance(observed, list)
            and len(wanted) == len(observed)
            and all(_within(w, o) for w, o in zip(wanted, observed, strict=True))
        )
    return bool(wanted == observed)


def differs(wanted: Manifest, observed: Manifest | None) -> bool:
    """Whether applying `wanted` would change `observed`: a spec change (the digest moved)
    or drift (someone changed or removed a field Conch sets). A field the API server
    spells differently (a canonicalised quantity) only costs a no-op apply."""
    if observed is None:
        return True
    digest = wanted["metadata"]["annotations"].get(APPLIED_ANNOTATION)
    applied = (observed["metadata"].get("annotations") or {}).get(APPLIED_ANNOTATION)
    return digest != applied or not _within(wanted, observed)


def single(
    svc: ModelService, mv: ModelVersion, settings: PodSettings, capabilities: Capabilities
) -> list[Manifest]:
    """The objects of a service serving one version (no rollout under way)."""
    replicas = deployment.service_replicas(svc)
    return desired(svc, [Served(mv, replicas)], [service.build(svc)], settings, capabilities)


def key(obj: Manifest) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def stale(wanted: list[Manifest], observed: list[Manifest]) -> list[Manifest]:
    """Observed owned objects that are no longer wanted (e.g. an HPA after autoscaling is unset)."""
    keep = {key(obj) for obj in wanted}
    return [obj for obj in observed if key(obj) not in keep]
