"""What differs between routers lives in the router: its needs, its split, its weight."""

from __future__ import annotations

import pytest

from conch import routers
from conch.builders import Capabilities
from conch.rollout import ReplicaPlan, Weights


def test_the_gateway_router_needs_http_routes() -> None:
    gateway, replicas = routers.create("gatewayAPI"), routers.create("replicas")
    assert gateway.unavailable(Capabilities()) is not None
    assert "HTTPRoute" in (gateway.unavailable(Capabilities()) or "")
    assert gateway.unavailable(Capabilities(http_route=True)) is None
    assert replicas.unavailable(Capabilities()) is None


@pytest.mark.parametrize(
    ("name", "exact", "plan"),
    [
        # 4 replicas at 10%: one canary pod is 20% of 5 behind one Service, exact on a route
        ("replicas", False, ReplicaPlan(stable=4, canary=1, requested=10, achieved=20)),
        ("gatewayAPI", True, ReplicaPlan(stable=4, canary=1, requested=10, achieved=10)),
    ],
)
def test_split_and_exactness(name: str, exact: bool, plan: ReplicaPlan) -> None:
    router = routers.create(name)
    assert router.exact is exact
    assert router.split(4, 10, None) == plan


def test_achieved_weight() -> None:
    asked = Weights.to_canary(25)
    ready = {"v1": 3, "v2": 1}
    assert routers.create("gatewayAPI").achieved(asked, ready, "v1", "v2") == asked
    assert routers.create("replicas").achieved(asked, ready, "v1", "v2") == Weights(75, 25)
    assert routers.create("replicas").achieved(asked, {"v1": 3}, "v1", "v2") == Weights(100, 0)
    assert routers.create("replicas").achieved(asked, ready, "v1", None) == Weights(100, 0)


def test_unknown_router() -> None:
    with pytest.raises(ValueError, match="unknown router"):
        routers.create("istio")
