"""Replica math of both routers: the worked examples of conch.rollout.weights, and the
budget and weight invariants over every small input."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conch.rollout.state import ReplicaPlan, Weights
from conch.rollout.weights import (
    gateway_split,
    gateway_weights,
    percent,
    replica_split,
    replica_weights,
    surge_stable,
)

FAST = settings(max_examples=200, deadline=None)
Split = Callable[[int, int, int | None], ReplicaPlan]

# (desired, weight, extra replicas allowed) -> (canary, stable, achieved %)
REPLICAS = [
    (4, 10, None, 1, 4, 20),
    (4, 50, None, 2, 2, 50),
    (4, 60, None, 3, 2, 60),
    (10, 10, None, 1, 9, 10),
    (1, 10, None, 1, 1, 50),
    (4, 60, 0, 2, 2, 50),
    (4, 10, 0, 1, 3, 25),
    (3, 50, 0, 1, 2, 33),
    (1, 10, 0, 0, 1, 0),
    (3, 100, 0, 3, 0, 100),
    (0, 50, None, 0, 0, 0),
]

GATEWAY = [
    (4, 10, None, 1, 4, 10),
    (4, 50, None, 2, 4, 50),
    (10, 50, 2, 5, 7, 50),
    (4, 10, 0, 1, 3, 10),
    (4, 100, 1, 4, 1, 100),
    (1, 10, 0, 0, 1, 0),
    (0, 10, None, 0, 0, 0),
]


@pytest.mark.parametrize(("desired", "weight", "extra", "canary", "stable", "achieved"), REPLICAS)
def test_replica_split_worked_examples(
    desired: int, weight: int, extra: int | None, canary: int, stable: int, achieved: int
) -> None:
    assert replica_split(desired, weight, extra) == ReplicaPlan(stable, canary, weight, achieved)


@pytest.mark.parametrize(("desired", "weight", "extra", "canary", "stable", "achieved"), GATEWAY)
def test_gateway_split_worked_examples(
    desired: int, weight: int, extra: int | None, canary: int, stable: int, achieved: int
) -> None:
    assert gateway_split(desired, weight, extra) == ReplicaPlan(stable, canary, weight, achieved)


def test_gateway_weights_are_exact() -> None:
    assert gateway_weights(10) == Weights(stable=90, canary=10)
    assert gateway_weights(100) == Weights(stable=0, canary=100)


def test_replica_weights_follow_ready_pods() -> None:
    assert replica_weights(4, 1) == Weights(stable=80, canary=20)
    assert replica_weights(2, 1) == Weights(stable=67, canary=33)
    assert replica_weights(0, 0) == Weights(stable=100, canary=0)


def test_weights_refuse_a_split_that_does_not_sum_to_100() -> None:
    with pytest.raises(ValueError, match="sum to 100"):
        Weights(stable=50, canary=60)


def test_surge_keeps_the_stable_version_within_the_budget() -> None:
    plan = replica_split(4, 50, None)
    assert surge_stable(4, plan, 4, None) == 4
    assert surge_stable(4, plan, 4, 1) == 3
    assert surge_stable(4, plan, 4, 0) == 2


splits = st.sampled_from([replica_split, gateway_split])
desired_counts = st.integers(min_value=0, max_value=50)
weights = st.integers(min_value=1, max_value=100)
budgets = st.one_of(st.none(), st.integers(min_value=0, max_value=20))


@FAST
@given(splits, desired_counts, weights, budgets)
def test_a_plan_never_exceeds_the_budget(
    split: Split, desired: int, weight: int, extra: int | None
) -> None:
    plan = split(desired, weight, extra)
    assert plan.stable >= 0 and plan.canary >= 0
    if extra is not None:
        assert plan.stable + plan.canary - desired <= extra
    assert 0 <= plan.achieved <= 100


@FAST
@given(splits, st.integers(min_value=1, max_value=50), st.integers(1, 99), budgets)
def test_a_plan_keeps_a_stable_replica_while_the_stable_version_gets_traffic(
    split: Split, desired: int, weight: int, extra: int | None
) -> None:
    plan = split(desired, weight, extra)
    assert plan.stable >= 1
    assert plan.canary == 0 or plan.achieved > 0


@FAST
@given(st.integers(min_value=1, max_value=50), weights)
def test_unlimited_replica_split_is_argo_basic_canary(desired: int, weight: int) -> None:
    plan = replica_split(desired, weight, None)
    assert plan.canary == -(-desired * weight // 100)
    if weight < 100:
        assert plan.stable == -(-desired * (100 - weight) // 100)
    assert plan.achieved == percent(plan.canary, plan.canary + plan.stable)


@FAST
@given(st.integers(min_value=1, max_value=50), weights, budgets)
def test_replica_split_reports_the_weight_it_achieves(
    desired: int, weight: int, extra: int | None
) -> None:
    plan = replica_split(desired, weight, extra)
    if plan.canary + plan.stable:
        exact = 100 * plan.canary / (plan.canary + plan.stable)
        assert abs(plan.achieved - exact) <= 0.5


@FAST
@given(splits, desired_counts, st.integers(2, 100), budgets, st.data())
def test_surge_never_exceeds_the_budget(
    split: Split, desired: int, weight: int, extra: int | None, data: st.DataObject
) -> None:
    """While the canary scales up to a step, the stable version keeps what it had (at most
    `desired`), as far as the budget allows."""
    before = split(desired, data.draw(st.integers(1, weight - 1)), extra)
    plan = split(desired, weight, extra)
    for previous in (desired, before.stable):
        stable = surge_stable(previous, plan, desired, extra)
        assert plan.stable <= stable <= max(previous, plan.stable)
        if extra is not None:
            assert stable + plan.canary - desired <= extra
