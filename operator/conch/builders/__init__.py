"""Pure builders: (ModelService, ModelVersion, settings) -> the manifests Conch owns. No I/O."""

from __future__ import annotations

from dataclasses import dataclass

from conch.api import ModelService, ModelVersion
from conch.builders import deployment, hpa, networkpolicy, pdb, service, servicemonitor
from conch.builders.deployment import PodSettings
from conch.builders.meta import Manifest, controlled_by

__all__ = [
    "Capabilities",
    "Manifest",
    "PodSettings",
    "Served",
    "controlled_by",
    "desired",
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
    """One ModelVersion the service runs, and its replicas (None: left to the HPA)."""

    mv: ModelVersion
    replicas: int | None
    credentials_hosts: tuple[str, ...] = ()
    """Where the pull may send the artifact credentials (checked by `conch.artifacts`)."""


def desired(
    svc: ModelService,
    served: list[Served],
    routing: list[Manifest],
    autoscaled: str | None,
    settings: PodSettings,
    capabilities: Capabilities,
) -> list[Manifest]:
    """Every object the ModelService should own, in apply order: the router's objects, a
    Deployment per served version, then the objects shared by all versions. `autoscaled`
    names the version whose Deployment the HPA scales."""
    objects = list(routing)
    objects += [
        deployment.build(svc, s.mv, settings, s.replicas, s.credentials_hosts) for s in served
    ]
    objects += [pdb.build(svc), networkpolicy.build(svc)]
    if autoscaled is not None and (autoscaler := hpa.build(svc, deployment.name(svc, autoscaled))):
        objects.append(autoscaler)
    if capabilities.service_monitor:
        objects.append(servicemonitor.build(svc))
    return objects


def single(
    svc: ModelService, mv: ModelVersion, settings: PodSettings, capabilities: Capabilities
) -> list[Manifest]:
    """The objects of a service serving one version (no rollout under way)."""
    replicas = None if svc.spec.autoscaling else deployment.fixed_replicas(svc)
    return desired(
        svc, [Served(mv, replicas)], [service.build(svc)], mv.metadata.name, settings, capabilities
    )


def key(obj: Manifest) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def stale(wanted: list[Manifest], observed: list[Manifest]) -> list[Manifest]:
    """Observed owned objects that are no longer wanted (e.g. an HPA after autoscaling is unset)."""
    keep = {key(obj) for obj in wanted}
    return [obj for obj in observed if key(obj) not in keep]
