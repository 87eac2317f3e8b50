"""Traffic routers behind one small interface, chosen by one factory.

A router carries everything that differs between ways of splitting traffic: the objects
that carry it (`objects`; a router that takes over prunes the other's through
`builders.stale`), the kinds those need in the cluster (`unavailable`), the replica split
a canary weight asks for (`split`), and the weight users actually get (`exact`,
`achieved`). Nothing outside this package tests a router's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from conch.api import ModelService
from conch.builders import Capabilities
from conch.builders.meta import Manifest
from conch.rollout import ReplicaPlan, Weights

__all__ = ["Router", "create"]


class Router(Protocol):
    """One way of splitting traffic between the stable and canary versions (a
    `conch.rollout.Traffic` for the rollout's replica math)."""

    name: str

    @property
    def exact(self) -> bool:
        """The weight it sets is the weight users get (replicas only provide capacity)."""
        ...

    def unavailable(self, capabilities: Capabilities) -> str | None:
        """Why this cluster cannot carry this router's objects (a kind it needs is not
        served), or None."""
        ...

    def split(self, desired: int, weight: int, extra: int | None) -> ReplicaPlan:
        """Replicas of each version for a canary `weight`, within `extra` spare replicas."""
        ...

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
