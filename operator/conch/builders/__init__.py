"""Pure builders: (ModelService, ModelVersion, settings) -> the manifests Conch owns. No I/O."""

from __future__ import annotations

from dataclasses import dataclass

from conch.api import ModelService, ModelVersion
from conch.builders import deployment, hpa, networkpolicy, pdb, service, servicemonitor
from conch.builders.deployment import PodSettings
from conch.builders.meta import Manifest

__all__ = ["Capabilities", "Manifest", "PodSettings", "desired", "key", "stale"]


@dataclass(frozen=True)
class Capabilities:
    """Optional APIs found in the cluster; owned kinds whose CRD is absent are skipped."""

    service_monitor: bool = False


def desired(
    svc: ModelService, mv: ModelVersion, settings: PodSettings, capabilities: Capabilities
) -> list[Manifest]:
    """Every object one ModelService serving one ModelVersion should own, in apply order."""
    dep = deployment.build(svc, mv, settings)
    objects = [service.build(svc), dep, pdb.build(svc), networkpolicy.build(svc)]
    if autoscaler := hpa.build(svc, dep["metadata"]["name"]):
        objects.append(autoscaler)
    if capabilities.service_monitor:
        objects.append(servicemonitor.build(svc))
    return objects


def key(obj: Manifest) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def stale(wanted: list[Manifest], observed: list[Manifest]) -> list[Manifest]:
    """Observed owned objects that are no longer wanted (e.g. an HPA after autoscaling is unset)."""
    keep = {key(obj) for obj in wanted}
    return [obj for obj in observed if key(obj) not in keep]
