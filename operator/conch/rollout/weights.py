"""Replica math: how many pods of each version a canary weight needs, within the GPU budget.

Two routers, two kinds of weight:

- `replicas`: one Service selects the pods of both versions, so the canary's share of
  traffic is its share of ready pods. A weight is approximated by a replica ratio, and the
  weight actually achieved is reported, not the one asked for.
- `gatewayAPI`: an HTTPRoute splits traffic by exact weights; replicas only provide
  capacity. The stable version keeps its full replica count so that an abort flips the
  route back at once, with no pods to wait for.

The GPU budget (`spec.rollout.maxExtraGPUs`): during a rollout, the replicas of both
versions together never hold more than `maxExtraGPUs` GPUs beyond what the stable version
holds alone (`desired` replicas). In replicas: `stable + canary - desired <=
maxExtraGPUs // gpusPerReplica` (`extra` below; None is unlimited). When the budget is
tight the stable version gives up replicas first (never its last one while it still gets
traffic), then the canary; a canary with zero replicas cannot progress, and the caller
waits with reason GPUBudgetExceeded.

Replicas router (`replica_split`), after Argo Rollouts' basic canary
(`rollout/canary.go`): each side gets at least its share, rounded up,

    canary = ceil(desired * weight / 100)
    stable = ceil(desired * (100 - weight) / 100)

which is `desired` or `desired + 1` replicas in all. If the budget forbids that one
rounding replica, the side whose rounded count overshoots its exact share more gives it
up (a tie: the canary, the cautious side), unless that is its last replica.

    desired  weight  extra  ->  canary  stable  achieved
       4       10     None        1       4       20%   (asked 10%: 1 of 5 pods)
       4       50     None        2       2       50%
       4       60     None        3       2       60%
      10       10     None        1       9       10%
       1       10     None        1       1       50%
       4       60      0          2       2       50%   (canary gave up the extra replica)
       4       10      0          1       3       25%   (canary at its last: stable gives)
       3       50      0          1       2       33%   (tie: the canary gives)
       1       10      0          0       1        0%   (no room: the rollout waits)
       3      100     any         3       0      100%

Gateway API router (`gateway_split`): the route weight is exact; the canary gets
`ceil(desired * weight / 100)` replicas beside a full stable version, budget permitting:

    desired  weight  extra  ->  canary  stable  achieved
       4       10     None        1       4       10%
       4       50     None        2       4       50%
      10       50      2          5       7       50%   (stable yields 3 to fit 2 extra)
       4       10      0          1       3       10%
       4      100      1          4       1      100%
       1       10      0          0       1        0%   (no room: the rollout waits)
"""

from __future__ import annotations

from conch.rollout.state import ReplicaPlan, Weights


def _ceil_share(desired: int, weight: int) -> int:
    return -(-desired * weight // 100)


def percent(part: int, whole: int) -> int:
    """`part` of `whole` in whole percent, rounded half up; 0 when `whole` is 0."""
    if whole <= 0:
        return 0
    return (200 * part + whole) // (2 * whole)


def replica_split(desired: int, weight: int, extra: int | None) -> ReplicaPlan:
    """Replicas of each version behind one Service for a canary `weight` (see module doc)."""
    if desired <= 0:
        return ReplicaPlan(stable=0, canary=0, requested=weight, achieved=0)
    if weight >= 100:
        return ReplicaPlan(stable=0, canary=desired, requested=weight, achieved=100)
    canary = _ceil_share(desired, weight)
    stable = _ceil_share(desired, 100 - weight)
    if extra is not None and canary + stable - desired > extra:
        canary_over = canary * 100 - desired * weight
        stable_over = stable * 100 - desired * (100 - weight)
        if (canary_over >= stable_over and canary > 1) or stable == 1:
            canary -= 1
        else:
            stable -= 1
    return ReplicaPlan(
        stable=stable,
        canary=canary,
        requested=weight,
        achieved=percent(canary, stable + canary),
    )


def gateway_split(desired: int, weight: int, extra: int | None) -> ReplicaPlan:
    """Replicas of each version for an exact HTTPRoute `weight` (see module doc)."""
    if desired <= 0:
        return ReplicaPlan(stable=0, canary=0, requested=weight, achieved=0)
    canary = _ceil_share(desired, weight)
    stable = desired
    if extra is not None and canary > extra:
        keep = 1 if weight < 100 else 0
        stable = max(desired + extra - canary, keep)
        canary = min(canary, desired + extra - stable)
    return ReplicaPlan(
        stable=stable,
        canary=canary,
        requested=weight,
        achieved=weight if canary > 0 else 0,
    )


def gateway_weights(weight: int) -> Weights:
    """The HTTPRoute backend weights for a canary `weight`: exact, no approximation."""
    return Weights.to_canary(max(0, min(100, weight)))


def replica_weights(stable_ready: int, canary_ready: int) -> Weights:
    """The split ready pods behind one Service achieve right now (all stable when none)."""
    total = stable_ready + canary_ready
    if total <= 0:
        return Weights(stable=100, canary=0)
    return Weights.to_canary(percent(canary_ready, total))


def surge_stable(previous: int, plan: ReplicaPlan, desired: int, extra: int | None) -> int:
    """Stable replicas while the canary scales up to `plan.canary`.

    The stable version shrinks to `plan.stable` only once the canary is ready, so serving
    capacity does not dip while new pods start; until then it keeps `previous` replicas, as
    far as the GPU budget allows beside the canary's new ones.

        previous 4, plan stable 2 canary 2, desired 4, extra None -> 4 (then 2)
        previous 4, plan stable 2 canary 2, desired 4, extra 1    -> 3 (then 2)
    """
    room = previous if extra is None else min(previous, desired + extra - plan.canary)
    return max(plan.stable, room)
