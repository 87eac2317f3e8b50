"""Traffic routers behind one small interface, chosen by one factory.

A router turns the rollout's stable/canary split into the objects that carry traffic, and
says which split those objects actually achieve.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from conch.api import ModelService
from conch.builders.meta import Manifest
from conch.rollout import Weights

__all__ = ["Router", "create"]


class Router(Protocol):
    name: str

    def objects(
        self, svc: ModelService, stable: str | None, canary: str | None, weights: Weights
    ) -> list[Manifest]:
        """The routing objects for this split (pure)."""
        ...

    def achieved(
        self, weights: Weights, ready: Mapping[str, int], stable: str | None, canary: str | None
    ) -> Weights:
        """The split users actually get, given the ready replicas of each version."""
        ...


def create(name: str) -> Router:
    """The router named in spec.rollout.router; unknown names are refused by the CRD."""
    if name == "replicas":
        from conch.routers.replicas import ReplicasRouter

        return ReplicasRouter()
    if name == "gatewayAPI":
        from conch.routers.gateway import GatewayRouter

        return GatewayRouter()
    raise ValueError(f"unknown router {name!r}")
