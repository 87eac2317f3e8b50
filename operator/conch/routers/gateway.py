"""The `gatewayAPI` router: an HTTPRoute with weighted backendRefs to per-version Services,
for any Gateway API implementation. The weight is exact; replicas only provide capacity."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from conch.api import ModelService
from conch.builders import Capabilities, service
from conch.builders.meta import Manifest, metadata, selector, version_child_name
from conch.builders.service import HTTP_PORT, PORTS
from conch.rollout import ReplicaPlan, Weights
from conch.rollout.weights import gateway_split

API_VERSION = "gateway.networking.k8s.io/v1"


def version_service_name(svc: ModelService, version: str) -> str:
    return version_child_name(svc.metadata.name, version)


def version_service(svc: ModelService, version: str) -> Manifest:
    """A Service over one version's pods: the HTTPRoute's backend for that version."""
    base = service.build(svc)
    base["metadata"] = metadata(svc, version_service_name(svc, version))
    base["metadata"]["labels"]["serving.conch.dev/version"] = version
    base["spec"]["selector"] = selector(svc, version)
    return base


def http_route(svc: ModelService, backends: list[tuple[str, int]]) -> Manifest:
    ref = svc.spec.rollout.gateway_ref
    assert ref is not None, "the CRD requires gatewayRef with router gatewayAPI"
    parent: dict[str, Any] = {"name": ref.name}
    if ref.namespace:
        parent["namespace"] = ref.namespace
    if ref.section_name:
        parent["sectionName"] = ref.section_name
    return {
        "apiVersion": API_VERSION,
        "kind": "HTTPRoute",
        "metadata": metadata(svc, svc.metadata.name),
        "spec": {
            "parentRefs": [parent],
            "rules": [
                {
                    "backendRefs": [
                        {"name": version_service_name(svc, v), "port": HTTP_PORT, "weight": w}
                        for v, w in backends
                    ]
                }
            ],
        },
    }


class GatewayRouter:
    name = "gatewayAPI"
    exact = True

    def unavailable(self, capabilities: Capabilities) -> str | None:
        if capabilities.http_route:
            return None
        return "router gatewayAPI needs the Gateway API CRDs (HTTPRoute)"

    def split(self, desired: int, weight: int, extra: int | None) -> ReplicaPlan:
        return gateway_split(desired, weight, extra)

    def objects(
        self, svc: ModelService, stable: str | None, canary: str | None, weights: Weights
    ) -> list[Manifest]:
        backends = [(v, w) for v, w in ((stable, weights.stable), (canary, weights.canary)) if v]
        return [
            service.build(svc),  # all versions: metrics and in-cluster access
            *(version_service(svc, v) for v, _ in backends),
            http_route(svc, backends),
        ]

    def achieved(
        self, weights: Weights, ready: Mapping[str, int], stable: str | None, canary: str | None
    ) -> Weights:
        return weights


__all__ = ["PORTS", "GatewayRouter", "http_route", "version_service"]
