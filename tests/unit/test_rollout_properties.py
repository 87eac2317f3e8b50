"""Properties of the rollout state machine over random policies and random histories.

A small simulated cluster drives `decide` the way the controller will: each tick moves
time, maybe edits the spec (target version, paused, replicas) or asks for an abort or a
retry, feeds the canary's samples, then lets the pods of each version approach the
decided replica counts (all at once, halfway, not at all, or stuck for lack of GPUs).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from hypothesis import event, given, settings
from hypothesis import strategies as st

from conch import routers
from conch.api import ModelServiceStatus
from conch.api.modelservice import Rollout, RolloutRecord
from conch.rollout import (
    Decision,
    Observation,
    Policy,
    RecordHistory,
    RolloutState,
    Samples,
    decide,
    evaluate,
    from_status,
    to_status,
)
from conch.status import to_wire

START = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
PROPERTY = settings(max_examples=200, deadline=None)

SAMPLES: dict[str, Samples | None] = {
    "good": Samples(requests=100, error_rate=0.0, p99_latency_ms=50, queue_time_ms=1),
    "bad": Samples(requests=100, error_rate=0.5, p99_latency_ms=50, queue_time_ms=1),
    "slow": Samples(requests=100, error_rate=0.0, p99_latency_ms=5000, queue_time_ms=1),
    "thin": Samples(requests=1, error_rate=0.0, p99_latency_ms=50, queue_time_ms=1),
    "missing": Samples(requests=100),
    "none": None,
}

ALLOWED = {
    "Stable": {"Stable", "Progressing", "Promoting"},
    "Progressing": {"Progressing", "Paused", "Promoting", "RollingBack"},
    "Paused": {"Paused", "Progressing", "Promoting", "RollingBack"},
    "Promoting": {"Promoting", "Stable"},
    "RollingBack": {"RollingBack", "RolledBack", "Stable", "Progressing", "Promoting"},
    "RolledBack": {"RolledBack", "Stable", "Progressing", "Promoting"},
}


@st.composite
def rollouts(draw: st.DrawFn) -> Rollout:
    steps = None
    if draw(st.booleans()):
        weights = sorted(draw(st.sets(st.integers(1, 100), min_size=1, max_size=4)))
        pauses = st.sampled_from([None, "0s", "10s", "45s", "2m"])
        steps = [{"weight": w, "pause": draw(pauses)} for w in weights]
    router = draw(st.sampled_from(["replicas", "gatewayAPI"]))
    return Rollout.model_validate(
        {
            "strategy": draw(st.sampled_from(["Canary", "Canary", "Canary", "Immediate"])),
            "steps": steps,
            "analysis": {
                "interval": draw(st.sampled_from(["10s", "30s", "1m"])),
                "failureLimit": draw(st.integers(1, 3)),
                "minRequests": draw(st.integers(0, 30)),
                "maxP99LatencyMs": draw(st.sampled_from([None, 500.0])),
            },
            "router": router,
            "gatewayRef": {"name": "gw"} if router == "gatewayAPI" else None,
            "maxExtraGPUs": draw(st.sampled_from([None, 0, 1, 2, 3, 8])),
            "maxAccuracyDrop": draw(st.sampled_from([None, 0.05])),
        }
    )


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    spec = draw(rollouts())
    return Policy(
        target="v2",
        rollout=spec,
        desired_replicas=draw(st.sampled_from([4, 1, 2, 3, 5, 6, 0])),
        traffic=routers.create(spec.router),
        gpus_per_replica=draw(st.sampled_from([1, 2, 4, 0])),
    )


@dataclass(frozen=True)
class Tick:
    seconds: int
    samples: str
    pods: str
    """all: ready = target; half: halfway there; none: nothing moves; stuck: the canary
    cannot grow (its pods are unschedulable for lack of GPUs)."""
    target: str | None = None
    paused: bool | None = None
    desired: int | None = None
    abort: bool = False
    retry: bool = False


def ticks(edits: bool = True) -> st.SearchStrategy[Tick]:
    rare = st.sampled_from([None] * 8 + [True, False]) if edits else st.none()
    return st.builds(
        Tick,
        seconds=st.sampled_from([0, 1, 5, 10, 30, 45, 60, 120, 300]),
        samples=st.sampled_from(sorted(SAMPLES)),
        pods=st.sampled_from(["all", "all", "half", "none", "stuck"]),
        target=st.sampled_from([None] * 10 + ["v1", "v2", "v3"]) if edits else st.none(),
        paused=rare,
        desired=st.sampled_from([None] * 10 + [0, 1, 3, 5]) if edits else st.none(),
        abort=st.sampled_from([False] * 8 + [True]) if edits else st.just(False),
        retry=st.sampled_from([False] * 8 + [True]) if edits else st.just(False),
    )


@dataclass
class World:
    """The simulated cluster and spec, mutated tick by tick."""

    policy: Policy
    state: RolloutState
    ready: dict[str, int]
    now: dt.datetime = START
    unschedulable: str | None = None
    accuracy_drop: float | None = None

    def edit(self, tick: Tick) -> None:
        self.now += dt.timedelta(seconds=tick.seconds)
        rollout = self.policy.rollout
        if tick.paused is not None:
            rollout = rollout.model_copy(update={"paused": tick.paused})
        self.policy = replace(
            self.policy,
            target=tick.target or self.policy.target,
            rollout=rollout,
            desired_replicas=(
                self.policy.desired_replicas if tick.desired is None else tick.desired
            ),
        )

    def observe(self, tick: Tick) -> Observation:
        return Observation(
            ready=dict(self.ready),
            canary_unschedulable=self.unschedulable,
            accuracy_drop=self.accuracy_drop,
            abort_requested=tick.abort,
            retry_requested=tick.retry,
        )

    def apply(self, decision: Decision, pods: str) -> None:
        """Pods approach the decided counts; versions no longer listed are deleted."""
        self.state = decision.state
        canary = decision.state.canary
        ready: dict[str, int] = {}
        for version, want in decision.replicas.items():
            have = self.ready.get(version, 0)
            if pods == "none" or (pods == "stuck" and version == canary and want > have):
                ready[version] = have
            elif pods == "half" and want > have:
                ready[version] = have + (want - have + 1) // 2
            else:
                ready[version] = want
        self.ready = ready
        self.unschedulable = "Insufficient nvidia.com/gpu" if pods == "stuck" else None


def restored(state: RolloutState) -> RolloutState:
    """`state` after a trip through status and the API server, as a restarted operator reads it."""
    status = to_status(ModelServiceStatus(), Decision(state=state, replicas={}), Observation())
    return from_status(ModelServiceStatus.model_validate(to_wire(status)))


def records(decision: Decision) -> list[RolloutRecord]:
    return [a.record for a in decision.actions if isinstance(a, RecordHistory)]


def check(world: World, before: RolloutState, obs: Observation, tick: Tick, d: Decision) -> None:
    policy, samples = world.policy, SAMPLES[tick.samples]
    # Weights are a split of 100.
    assert 0 <= d.weights.canary <= 100 and d.weights.stable + d.weights.canary == 100
    # The GPU budget is never exceeded by the replica targets.
    extra = policy.extra_replicas
    desired = policy.desired_replicas
    assert all(n >= 0 for n in d.replicas.values())
    if extra is not None:
        over = sum(d.replicas.values()) - desired
        assert over <= extra
        assert over * policy.gpus_per_replica <= (policy.rollout.max_extra_gpus or 0)
    # Only allowed edges.
    if before.stable is None:
        assert d.phase == "Stable"
    else:
        assert d.phase in ALLOWED[before.phase], (before.phase, d.phase)
    # Nothing advances or promotes without a Passed analysis taken now.
    same_canary = d.state.canary == before.canary and before.phase == "Progressing"
    advanced = d.phase == "Promoting" or (
        d.phase == "Progressing" and (d.step or 0) > (before.step or 0)
    )
    if same_canary and advanced and policy.rollout.strategy == "Canary":
        last = d.state.last_analysis
        assert last is not None and last.time == world.now and last.verdict == "Passed"
        assert evaluate(policy.rollout.analysis, samples).verdict == "Passed"
    # A rollback sends no traffic and no replicas to the canary.
    if d.phase in ("RollingBack", "RolledBack"):
        assert d.state.canary is not None
        assert d.replicas[d.state.canary] == 0
        assert d.replicas[d.state.stable or ""] == desired
        if policy.rollout.router == "gatewayAPI":
            assert (d.weights.stable, d.weights.canary) == (100, 0)
    if d.phase == "RolledBack" and before.phase == "RollingBack":
        assert obs.ready_of(d.state.canary) == 0
        assert (d.weights.stable, d.weights.canary) == (100, 0)
    # Deterministic, and a restarted operator (state read back from status) decides the same.
    assert decide(policy, before, obs, samples, world.now) == d
    assert decide(policy, restored(before), obs, samples, world.now) == d


def check_fixed_point(world: World, obs: Observation, tick: Tick, first: Decision) -> None:
    """Deciding again at the same instant with the recorded state settles within a few
    calls, takes at most one analysis and never records the same rollout twice."""
    samples = SAMPLES[tick.samples]
    calm = replace(obs, abort_requested=False, retry_requested=False)
    seen = records(first)
    counted = int(
        first.state.last_analysis is not None and first.state.last_analysis.time == world.now
    )
    state = first.state
    for _ in range(10):
        again = decide(world.policy, state, calm, samples, world.now)
        new = again.state.last_analysis
        if new is not None and new != state.last_analysis and new.time == world.now:
            counted += 1
        for record in records(again):
            assert record not in seen
            seen.append(record)
        if again.state == state and not again.actions and not again.events:
            break
        state = again.state
    else:
        raise AssertionError(f"no fixed point from {first.state}")
    assert counted <= 1


@PROPERTY
@given(
    policies(),
    st.sampled_from([None, 0.0, 0.2]),
    st.lists(ticks(), min_size=3, max_size=30),
)
def test_random_histories_keep_every_invariant(
    policy: Policy, drop: float | None, history: list[Tick]
) -> None:
    world = World(
        policy=policy,
        state=RolloutState(stable="v1"),
        ready={"v1": policy.desired_replicas},
        accuracy_drop=drop,
    )
    for tick in history:
        world.edit(tick)
        before, obs = world.state, world.observe(tick)
        decision = decide(world.policy, before, obs, SAMPLES[tick.samples], world.now)
        check(world, before, obs, tick, decision)
        check_fixed_point(world, obs, tick, decision)
        world.apply(decision, tick.pods)
        event(f"phase {decision.phase}")


@PROPERTY
@given(policies(), st.lists(ticks(edits=False), max_size=10), st.booleans())
def test_every_rollback_ends_all_stable_with_the_canary_at_zero(
    policy: Policy, prefix: list[Tick], bad: bool
) -> None:
    policy = replace(policy, desired_replicas=max(1, policy.desired_replicas))
    world = World(policy=policy, state=RolloutState(stable="v1"), ready={"v1": 4})
    rolled_back = False
    for tick in prefix:
        world.edit(tick)
        decision = decide(
            world.policy, world.state, world.observe(tick), SAMPLES[tick.samples], world.now
        )
        rolled_back |= decision.phase == "RollingBack"
        world.apply(decision, tick.pods)
    # Abort (or keep failing) and let the pods follow: the rollback must finish.
    finish = Tick(seconds=60, samples="bad" if bad else "good", pods="all", abort=not bad)
    for _ in range(12):
        world.edit(finish)
        decision = decide(
            world.policy, world.state, world.observe(finish), SAMPLES[finish.samples], world.now
        )
        rolled_back |= decision.phase == "RollingBack"
        world.apply(decision, finish.pods)
        if not bad:
            finish = replace(finish, abort=False)
    if rolled_back:
        assert decision.phase == "RolledBack"
        canary = decision.state.canary
        assert canary is not None
        assert decision.replicas[canary] == 0 and world.ready[canary] == 0
        assert (decision.weights.stable, decision.weights.canary) == (100, 0)
        assert decision.replicas[decision.state.stable or ""] == world.policy.desired_replicas
    else:  # nothing to roll back: promoted already, or waiting on a GPU budget with no room
        canary = decision.state.canary
        stalled = canary is not None and decision.replicas.get(canary) == 0
        assert decision.phase == "Stable" or (decision.phase == "Progressing" and stalled)
    event(f"rolled back: {rolled_back}")
