"""The `replicas` router: one Service over every version's pods; the weight is the share of
ready pods. Needs nothing but Kubernetes."""

from __future__ import annotations

from collections.abc import Mapping

from conch.api import ModelService
from conch.builders import Capabilities, service
from conch.builders.meta import Manifest
from conch.rollout import ReplicaPlan, Weights
from conch.rollout.weights import replica_split, replica_weights


class ReplicasRouter:
    name = "replicas"
    exact = False

    def unavailable(self, capabilities: Capabilities) -> str | None:
        return None  # a Service: every cluster has them

    def split(self, desired: int, weight: int, extra: int | None) -> ReplicaPlan:
        return replica_split(desired, weight, extra)

    def objects(
        self, svc: ModelService, stable: str | None, canary: str | None, weights: Weights
    ) -> list[Manifest]:
        return [service.build(svc)]

    def achieved(
        self, weights: Weights, ready: Mapping[str, int], stable: str | None, canary: str | None
    ) -> Weights:
        if canary is None:
            return Weights(stable=100, canary=0)
        return replica_weights(max(0, ready.get(stable or "", 0)), max(0, ready.get(canary, 0)))
