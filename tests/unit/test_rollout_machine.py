"""The rollout state machine as a table: one row per (phase, situation) -> outcome.

Default policy: target v2, 4 replicas of 1 GPU, replicas router, steps 10% then 50%
(no pause: each holds one 30s interval), failureLimit 2, minRequests 20.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from conch import reasons, routers
from conch.api.modelservice import AnalysisResult, Rollout, RolloutRecord
from conch.rollout import (
    AcknowledgeRequest,
    Action,
    Decision,
    Observation,
    Policy,
    RecordHistory,
    RolloutState,
    Samples,
    analysis_due,
    decide,
    needs_metrics,
)

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
STARTED = NOW - dt.timedelta(minutes=10)
DUE = NOW - dt.timedelta(seconds=30)  # a step started here is due for analysis now
EARLY = NOW - dt.timedelta(seconds=10)  # a step started here is not due yet

GOOD = Samples(requests=100, error_rate=0.001, p99_latency_ms=80)
BAD = Samples(requests=100, error_rate=0.2)
THIN = Samples(requests=5, error_rate=0.0)

STABLE = RolloutState(phase="Stable", stable="v1")


def policy(target: str = "v2", desired: int = 4, gpus: int = 1, **rollout: Any) -> Policy:
    spec = Rollout(**rollout)
    return Policy(
        target=target,
        rollout=spec,
        desired_replicas=desired,
        traffic=routers.create(spec.router),
        gpus_per_replica=gpus,
    )


def at_step(step: int, started: dt.datetime | None = DUE, **changes: Any) -> RolloutState:
    state = RolloutState(
        phase="Progressing",
        stable="v1",
        canary="v2",
        step=step,
        step_started_at=started,
        started_at=STARTED,
    )
    return replace(state, **changes)


def analysed(verdict: str, when: dt.datetime) -> AnalysisResult:
    return AnalysisResult(time=when, verdict=verdict, message=f"{verdict.lower()}: earlier")  # type: ignore[arg-type]


def history(
    to: str, result: str, reason: str, started: dt.datetime | None = STARTED, frm: str = "v1"
) -> RecordHistory:
    record = RolloutRecord(
        from_version=frm,
        to_version=to,
        result=result,  # type: ignore[arg-type]
        reason=reason,
        started_at=started,
        finished_at=NOW,
    )
    return RecordHistory(record)


PROMOTING_FROM_LAST = RolloutState(
    phase="Promoting", stable="v1", canary="v2", step=1, started_at=STARTED
)
ROLLING_BACK = RolloutState(
    phase="RollingBack",
    stable="v1",
    canary="v2",
    step=0,
    started_at=STARTED,
    failed_analyses=2,
    rollback_reason=reasons.ANALYSIS_FAILED,
)
ROLLED_BACK = replace(ROLLING_BACK, phase="RolledBack")


@dataclass(frozen=True)
class Case:
    name: str
    state: RolloutState
    phase: str
    step: int | None
    replicas: dict[str, int]
    weights: tuple[int, int] = (100, 0)
    actions: tuple[Action, ...] = ()
    events: tuple[str, ...] = ()
    conditions: tuple[str, ...] = ()
    policy: Policy = field(default_factory=policy)
    ready: dict[str, int] = field(default_factory=lambda: {"v1": 4})
    observation: dict[str, Any] = field(default_factory=dict)
    samples: Samples | None = GOOD


CASES = [
    # -- first reconcile: nothing to roll from ----------------------------------------
    Case("first deploy", RolloutState(), "Stable", None, {"v2": 4}, ready={}),
    # -- Stable -------------------------------------------------------------------------
    Case("stable, target unchanged", STABLE, "Stable", None, {"v1": 4}, policy=policy("v1")),
    Case(
        "stable, new target starts step 0",
        STABLE,
        "Progressing",
        0,
        {"v1": 4, "v2": 1},
        events=(reasons.ROLLOUT_STARTED,),
        conditions=(reasons.CANARY_SCALING,),
    ),
    Case(
        "stable, new target over maxAccuracyDrop stays stable",
        STABLE,
        "Stable",
        None,
        {"v1": 4},
        policy=policy(max_accuracy_drop=0.01),
        observation={"accuracy_drop": 0.05},
        conditions=(reasons.ACCURACY_GATE_FAILED, reasons.ACCURACY_GATE_FAILED),
    ),
    Case(
        "stable, new target within maxAccuracyDrop starts",
        STABLE,
        "Progressing",
        0,
        {"v1": 4, "v2": 1},
        policy=policy(max_accuracy_drop=0.05),
        observation={"accuracy_drop": 0.01},
        events=(reasons.ROLLOUT_STARTED,),
        conditions=(reasons.CANARY_SCALING,),
    ),
    Case(
        "stable, new target while paused waits",
        STABLE,
        "Stable",
        None,
        {"v1": 4},
        policy=policy(paused=True),
        conditions=(reasons.PAUSED,),
    ),
    Case(
        "stable, strategy Immediate promotes at once",
        STABLE,
        "Promoting",
        None,
        {"v1": 4, "v2": 4},
        policy=policy(strategy="Immediate"),
        actions=(history("v2", "Promoted", reasons.IMMEDIATE, NOW),),
        events=(reasons.PROMOTING,),
        conditions=(reasons.PROMOTING,),
    ),
    Case(
        "stable, Immediate within a tight GPU budget shrinks the old version",
        STABLE,
        "Promoting",
        None,
        {"v1": 1, "v2": 4},
        policy=policy(strategy="Immediate", gpus=2, max_extra_gpus=3),
        actions=(history("v2", "Promoted", reasons.IMMEDIATE, NOW),),
        events=(reasons.PROMOTING,),
        conditions=(reasons.PROMOTING,),
    ),
    Case(
        "stable, scaled to zero switches at once",
        STABLE,
        "Promoting",
        None,
        {"v1": 0, "v2": 0},
        policy=policy(desired=0),
        ready={},
        actions=(history("v2", "Promoted", reasons.SCALED_TO_ZERO, NOW),),
        events=(reasons.PROMOTING,),
        conditions=(reasons.PROMOTING,),
    ),
    Case(
        "stable, abort and retry requests are acknowledged and ignored",
        STABLE,
        "Stable",
        None,
        {"v1": 4},
        policy=policy("v1"),
        observation={"abort_requested": True, "retry_requested": True},
        actions=(AcknowledgeRequest("abort"), AcknowledgeRequest("retry")),
    ),
    # -- Progressing: scaling the canary up ----------------------------------------------
    Case(
        "step 0, canary not ready holds the stable version",
        at_step(0, None),
        "Progressing",
        0,
        {"v1": 4, "v2": 1},
        conditions=(reasons.CANARY_SCALING,),
    ),
    Case(
        "step 0, canary pods unschedulable waits on GPUs",
        at_step(0, None),
        "Progressing",
        0,
        {"v1": 4, "v2": 1},
        observation={"canary_unschedulable": "0/3 nodes: 3 Insufficient nvidia.com/gpu"},
        conditions=(reasons.INSUFFICIENT_GPU,),
    ),
    Case(
        "step 0, GPU budget leaves no room for one canary replica",
        at_step(0, None),
        "Progressing",
        0,
        {"v1": 1, "v2": 0},
        policy=policy(desired=1, max_extra_gpus=0),
        ready={"v1": 1},
        conditions=(reasons.GPU_BUDGET_EXCEEDED,),
    ),
    Case(
        "step 0, canary ready starts the step (replica ratio 1:4 is 20%)",
        at_step(0, None),
        "Progressing",
        0,
        {"v1": 4, "v2": 1},
        weights=(80, 20),
        ready={"v1": 4, "v2": 1},
        events=(reasons.CANARY_STEP,),
        conditions=(reasons.CANARY_STEP,),
    ),
    Case(
        "step 0, gatewayAPI sets the exact weight once the canary is ready",
        at_step(0, None),
        "Progressing",
        0,
        {"v1": 4, "v2": 1},
        weights=(90, 10),
        policy=policy(router="gatewayAPI", gateway_ref={"name": "gw"}),
        ready={"v1": 4, "v2": 1},
        events=(reasons.CANARY_STEP,),
        conditions=(reasons.CANARY_STEP,),
    ),
    Case(
        "step 1 scaling up keeps the stable version at its step-0 count (surge first)",
        at_step(1, None),
        "Progressing",
        1,
        {"v1": 4, "v2": 2},
        weights=(80, 20),
        ready={"v1": 4, "v2": 1},
        conditions=(reasons.CANARY_SCALING,),
    ),
    Case(
        "step 1 within a 1-GPU budget: the stable version makes room while it surges",
        at_step(1, None),
        "Progressing",
        1,
        {"v1": 3, "v2": 2},
        weights=(80, 20),
        policy=policy(max_extra_gpus=1),
        ready={"v1": 4, "v2": 1},
        conditions=(reasons.CANARY_SCALING,),
    ),
    Case(
        "step 1 gatewayAPI keeps step 0's weight until the canary is ready",
        at_step(1, None),
        "Progressing",
        1,
        {"v1": 4, "v2": 2},
        weights=(90, 10),
        policy=policy(router="gatewayAPI", gateway_ref={"name": "gw"}),
        ready={"v1": 4, "v2": 1},
        conditions=(reasons.CANARY_SCALING,),
    ),
    # -- Progressing: analysis -------------------------------------------------------------
    Case(
        "step 0 holds until its analysis is due",
        at_step(0, EARLY),
        "Progressing",
        0,
        {"v1": 4, "v2": 1},
        weights=(80, 20),
        ready={"v1": 4, "v2": 1},
        samples=BAD,
        conditions=(reasons.CANARY_STEP,),
    ),
    Case(
        "step 0 passed advances to step 1",
        at_step(0),
        "Progressing",
        1,
        {"v1": 4, "v2": 2},
        weights=(80, 20),
        ready={"v1": 4, "v2": 1},
        events=(reasons.ANALYSIS_PASSED,),
        conditions=(reasons.CANARY_SCALING,),
    ),
    Case(
        "step 0 passed within its 5m pause holds",
        at_step(0),
        "Progressing",
        0,
        {"v1": 4, "v2": 1},
        weights=(80, 20),
        policy=policy(steps=[{"weight": 10, "pause": "5m"}, {"weight": 50}]),
        ready={"v1": 4, "v2": 1},
        conditions=(reasons.CANARY_STEP,),
    ),
    Case(
        "step 0 failed once counts the failure",
        at_step(0),
        "Progressing",
        0,
        {"v1": 4, "v2": 1},
        weights=(80, 20),
        ready={"v1": 4, "v2": 1},
        samples=BAD,
        events=(reasons.ANALYSIS_FAILED,),
        conditions=(reasons.ANALYSIS_FAILED,),
    ),
    Case(
        "step 0 failed at failureLimit rolls back",
        at_step(0, failed_analyses=1),
        "RollingBack",
        0,
        {"v1": 4, "v2": 0},
        weights=(80, 20),
        ready={"v1": 4, "v2": 1},
        samples=BAD,
        actions=(history("v2", "RolledBack", reasons.ANALYSIS_FAILED),),
        events=(reasons.ROLLING_BACK,),
        conditions=(reasons.ROLLING_BACK, reasons.ANALYSIS_FAILED),
    ),
    Case(
        "step 0 failed at failureLimit, gatewayAPI: route back to stable first",
        at_step(0, failed_analyses=1),
        "RollingBack",
        0,
        {"v1": 4, "v2": 0},
        policy=policy(router="gatewayAPI", gateway_ref={"name": "gw"}),
        ready={"v1": 4, "v2": 1},
        samples=BAD,
        actions=(history("v2", "RolledBack", reasons.ANALYSIS_FAILED),),
        events=(reasons.ROLLING_BACK,),
        conditions=(reasons.ROLLING_BACK, reasons.ANALYSIS_FAILED),
    ),
    Case(
        "step 0 inconclusive (thin traffic) neither advances nor counts",
        at_step(0, failed_analyses=1),
        "Progressing",
        0,
        {"v1": 4, "v2": 1},
        weights=(80, 20),
        ready={"v1": 4, "v2": 1},
        samples=THIN,
        events=(reasons.ANALYSIS_INCONCLUSIVE,),
        conditions=(reasons.ANALYSIS_INCONCLUSIVE,),
    ),
    Case(
        "step 0 inconclusive again is reported once",
        at_step(0, last_analysis=analysed("Inconclusive", NOW - dt.timedelta(seconds=1))),
        "Progressing",
        0,
        {"v1": 4, "v2": 1},
        weights=(80, 20),
        policy=policy(analysis={"interval": "1s"}),
        ready={"v1": 4, "v2": 1},
        samples=THIN,
        conditions=(reasons.ANALYSIS_INCONCLUSIVE,),
    ),
    Case(
        "step 0 with no samples is inconclusive",
        at_step(0),
        "Progressing",
        0,
        {"v1": 4, "v2": 1},
        weights=(80, 20),
        ready={"v1": 4, "v2": 1},
        samples=None,
        events=(reasons.ANALYSIS_INCONCLUSIVE,),
        conditions=(reasons.ANALYSIS_INCONCLUSIVE,),
    ),
    Case(
        "an analysis already taken at this instant is not taken again",
        at_step(0, last_analysis=analysed("Failed", NOW), failed_analyses=1),
        "Progressing",
        0,
        {"v1": 4, "v2": 1},
        weights=(80, 20),
        policy=policy(analysis={"interval": "0s"}),
        ready={"v1": 4, "v2": 1},
        samples=BAD,
        conditions=(reasons.ANALYSIS_FAILED,),
    ),
    Case(
        "last step passed promotes",
        at_step(1),
        "Promoting",
        1,
        {"v1": 2, "v2": 4},
        weights=(50, 50),
        ready={"v1": 2, "v2": 2},
        actions=(history("v2", "Promoted", reasons.ANALYSIS_PASSED),),
        events=(reasons.PROMOTING,),
        conditions=(reasons.PROMOTING,),
    ),
    Case(
        "progressing, strategy switched to Immediate promotes",
        at_step(0),
        "Promoting",
        None,
        {"v1": 4, "v2": 4},
        weights=(80, 20),
        policy=policy(strategy="Immediate"),
        ready={"v1": 4, "v2": 1},
        actions=(history("v2", "Promoted", reasons.IMMEDIATE),),
        events=(reasons.PROMOTING,),
        conditions=(reasons.PROMOTING,),
    ),
    # -- no silent stalls: no metrics source, inconclusive limit, progress deadline ----------
    Case(
        "stable, a canary needing analysis without a metrics source does not start",
        STABLE,
        "Stable",
        None,
        {"v1": 4},
        policy=replace(policy(), metrics_available=False),
        conditions=(reasons.NO_METRICS_SOURCE, reasons.NO_METRICS_SOURCE),
    ),
    Case(
        "stable, no metrics source but analysis disabled starts a timed canary",
        STABLE,
        "Progressing",
        0,
        {"v1": 4, "v2": 1},
        policy=replace(policy(analysis={"enabled": False}), metrics_available=False),
        events=(reasons.ROLLOUT_STARTED,),
        conditions=(reasons.CANARY_SCALING,),
    ),
    Case(
        "stable, no metrics source with strategy Immediate promotes",
        STABLE,
        "Promoting",
        None,
        {"v1": 4, "v2": 4},
        policy=replace(policy(strategy="Immediate"), metrics_available=False),
        actions=(history("v2", "Promoted", reasons.IMMEDIATE, NOW),),
        events=(reasons.PROMOTING,),
        conditions=(reasons.PROMOTING,),
    ),
    Case(
        "timed step (analysis disabled) advances when its hold ends, without samples",
        at_step(0),
        "Progressing",
        1,
        {"v1": 4, "v2": 2},
        weights=(80, 20),
        policy=policy(analysis={"enabled": False}),
        ready={"v1": 4, "v2": 1},
        samples=None,
        events=(reasons.ANALYSIS_PASSED,),
        conditions=(reasons.CANARY_SCALING,),
    ),
    Case(
        "timed step holds until its pause has passed, whatever the samples",
        at_step(0),
        "Progressing",
        0,
        {"v1": 4, "v2": 1},
        weights=(80, 20),
        policy=policy(analysis={"enabled": False}, steps=[{"weight": 10, "pause": "5m"}]),
        ready={"v1": 4, "v2": 1},
        samples=BAD,
        conditions=(reasons.CANARY_STEP,),
    ),
    Case(
        "step 0 inconclusive below the limit only counts",
        at_step(0, inconclusive_analyses=8),
        "Progressing",
        0,
        {"v1": 4, "v2": 1},
        weights=(80, 20),
        ready={"v1": 4, "v2": 1},
        samples=THIN,
        events=(reasons.ANALYSIS_INCONCLUSIVE,),
        conditions=(reasons.ANALYSIS_INCONCLUSIVE,),
    ),
    Case(
        "step 0 inconclusiveLimit reached pauses (onStall Pause, the default)",
        at_step(0, inconclusive_analyses=9),
        "Paused",
        0,
        {"v1": 4, "v2": 1},
        weights=(80, 20),
        ready={"v1": 4, "v2": 1},
        samples=THIN,
        events=(reasons.INCONCLUSIVE_LIMIT_REACHED,),
        conditions=(reasons.INCONCLUSIVE_LIMIT_REACHED, reasons.INCONCLUSIVE_LIMIT_REACHED),
    ),
    Case(
        "step 0 inconclusiveLimit reached rolls back with onStall RollBack",
        at_step(0, inconclusive_analyses=2),
        "RollingBack",
        0,
        {"v1": 4, "v2": 0},
        weights=(80, 20),
        policy=policy(on_stall="RollBack", analysis={"inconclusive_limit": 3}),
        ready={"v1": 4, "v2": 1},
        samples=None,
        actions=(history("v2", "RolledBack", reasons.INCONCLUSIVE_LIMIT_REACHED),),
        events=(reasons.ROLLING_BACK,),
        conditions=(reasons.ROLLING_BACK, reasons.INCONCLUSIVE_LIMIT_REACHED),
    ),
    Case(
        "canary never ready within progressDeadline pauses",
        at_step(0, started=None, progressed_at=NOW - dt.timedelta(hours=1)),
        "Paused",
        0,
        {"v1": 4, "v2": 1},
        observation={"canary_unschedulable": "0/3 nodes: Insufficient nvidia.com/gpu"},
        events=(reasons.ROLLOUT_DEADLINE_EXCEEDED,),
        conditions=(reasons.ROLLOUT_DEADLINE_EXCEEDED, reasons.ROLLOUT_DEADLINE_EXCEEDED),
    ),
    Case(
        "no progress within a short progressDeadline rolls back with onStall RollBack",
        at_step(1, progressed_at=NOW - dt.timedelta(minutes=5)),
        "RollingBack",
        1,
        {"v1": 4, "v2": 0},
        weights=(60, 40),
        policy=policy(progress_deadline="5m", on_stall="RollBack"),
        ready={"v1": 3, "v2": 2},
        samples=THIN,
        actions=(history("v2", "RolledBack", reasons.ROLLOUT_DEADLINE_EXCEEDED),),
        events=(reasons.ANALYSIS_INCONCLUSIVE, reasons.ROLLING_BACK),
        conditions=(reasons.ROLLING_BACK, reasons.ROLLOUT_DEADLINE_EXCEEDED),
    ),
    Case(
        "a stalled rollout holds, even with good samples, until a retry",
        at_step(
            0,
            phase="Paused",
            stall_reason=reasons.INCONCLUSIVE_LIMIT_REACHED,
            inconclusive_analyses=10,
        ),
        "Paused",
        0,
        {"v1": 4, "v2": 1},
        weights=(80, 20),
        ready={"v1": 4, "v2": 1},
        conditions=(reasons.INCONCLUSIVE_LIMIT_REACHED, reasons.INCONCLUSIVE_LIMIT_REACHED),
    ),
    Case(
        "a stalled rollout resumes on a retry request, its hold and deadline start again",
        at_step(
            0,
            phase="Paused",
            stall_reason=reasons.INCONCLUSIVE_LIMIT_REACHED,
            inconclusive_analyses=10,
        ),
        "Progressing",
        0,
        {"v1": 4, "v2": 1},
        weights=(80, 20),
        ready={"v1": 4, "v2": 1},
        observation={"retry_requested": True},
        actions=(AcknowledgeRequest("retry"),),
        events=(reasons.RESUMED,),
        conditions=(reasons.CANARY_STEP,),
    ),
    Case(
        "a stalled rollout is aborted at once",
        at_step(0, phase="Paused", stall_reason=reasons.ROLLOUT_DEADLINE_EXCEEDED),
        "RollingBack",
        0,
        {"v1": 4, "v2": 0},
        weights=(80, 20),
        ready={"v1": 4, "v2": 1},
        observation={"abort_requested": True},
        actions=(
            history("v2", "Aborted", reasons.ABORTED),
            AcknowledgeRequest("abort"),
        ),
        events=(reasons.ROLLING_BACK,),
        conditions=(reasons.ROLLING_BACK,),
    ),
    # -- Progressing: the user steps in -----------------------------------------------------
    Case(
        "progressing, paused holds everything",
        at_step(0),
        "Paused",
        0,
        {"v1": 4, "v2": 1},
        weights=(80, 20),
        policy=policy(paused=True),
        ready={"v1": 4, "v2": 1},
        samples=BAD,
        events=(reasons.PAUSED,),
        conditions=(reasons.PAUSED,),
    ),
    Case(
        "progressing, abort rolls back",
        at_step(0),
        "RollingBack",
        0,
        {"v1": 4, "v2": 0},
        weights=(80, 20),
        ready={"v1": 4, "v2": 1},
        observation={"abort_requested": True},
        actions=(
            history("v2", "Aborted", reasons.ABORTED),
            AcknowledgeRequest("abort"),
        ),
        events=(reasons.ROLLING_BACK,),
        conditions=(reasons.ROLLING_BACK,),
    ),
    Case(
        "progressing, promote skips the remaining steps",
        at_step(0, started=EARLY),
        "Promoting",
        None,
        {"v1": 4, "v2": 4},
        weights=(80, 20),
        ready={"v1": 4, "v2": 1},
        samples=None,
        observation={"promote_requested": True},
        actions=(
            history("v2", "Promoted", reasons.PROMOTE_REQUESTED),
            AcknowledgeRequest("promote"),
        ),
        events=(reasons.PROMOTING,),
        conditions=(reasons.PROMOTING,),
    ),
    Case(
        "paused (spec), promote still promotes",
        at_step(1, phase="Paused"),
        "Promoting",
        None,
        {"v1": 4, "v2": 4},
        weights=(50, 50),
        policy=policy(paused=True),
        ready={"v1": 2, "v2": 2},
        observation={"promote_requested": True},
        actions=(
            history("v2", "Promoted", reasons.PROMOTE_REQUESTED),
            AcknowledgeRequest("promote"),
        ),
        events=(reasons.PROMOTING,),
        conditions=(reasons.PROMOTING,),
    ),
    Case(
        "stalled, promote promotes",
        at_step(0, phase="Paused", stall_reason=reasons.INCONCLUSIVE_LIMIT_REACHED),
        "Promoting",
        None,
        {"v1": 4, "v2": 4},
        weights=(80, 20),
        ready={"v1": 4, "v2": 1},
        observation={"promote_requested": True},
        actions=(
            history("v2", "Promoted", reasons.PROMOTE_REQUESTED),
            AcknowledgeRequest("promote"),
        ),
        events=(reasons.PROMOTING,),
        conditions=(reasons.PROMOTING,),
    ),
    Case(
        "progressing toward a third version, promote waits for its canary",
        at_step(0, phase="Paused"),
        "Paused",
        0,
        {"v1": 4, "v2": 1},
        weights=(80, 20),
        policy=policy("v3", paused=True),
        ready={"v1": 4, "v2": 1},
        observation={"promote_requested": True},
        actions=(AcknowledgeRequest("promote"),),
        conditions=(reasons.PAUSED,),
    ),
    Case(
        "rolled back, promote is only acknowledged",
        ROLLED_BACK,
        "RolledBack",
        0,
        {"v1": 4, "v2": 0},
        observation={"promote_requested": True},
        actions=(AcknowledgeRequest("promote"),),
        conditions=(reasons.ROLLED_BACK, reasons.ANALYSIS_FAILED),
    ),
    Case(
        "progressing, target back to the stable version rolls back",
        at_step(0),
        "RollingBack",
        0,
        {"v1": 4, "v2": 0},
        weights=(80, 20),
        policy=policy("v1"),
        ready={"v1": 4, "v2": 1},
        actions=(history("v2", "Aborted", reasons.TARGET_REVERTED),),
        events=(reasons.ROLLING_BACK,),
        conditions=(reasons.ROLLING_BACK,),
    ),
    Case(
        "progressing, a third version abandons the canary and starts over",
        at_step(1),
        "Progressing",
        0,
        {"v1": 4, "v2": 0, "v3": 1},
        policy=policy("v3"),
        ready={"v1": 2, "v2": 2},
        weights=(100, 0),
        actions=(history("v2", "Aborted", reasons.SUPERSEDED),),
        events=(reasons.SUPERSEDED, reasons.ROLLOUT_STARTED),
        conditions=(reasons.CANARY_SCALING,),
    ),
    Case(
        "progressing, a third version refused by the accuracy gate rolls back",
        at_step(0),
        "RollingBack",
        0,
        {"v1": 4, "v2": 0},
        weights=(80, 20),
        policy=policy("v3", max_accuracy_drop=0.01),
        ready={"v1": 4, "v2": 1},
        observation={"accuracy_drop": 0.2},
        actions=(history("v2", "Aborted", reasons.SUPERSEDED),),
        events=(reasons.ROLLING_BACK,),
        conditions=(reasons.ROLLING_BACK,),
    ),
    # -- Paused ----------------------------------------------------------------------------
    Case(
        "paused stays paused",
        at_step(0, phase="Paused"),
        "Paused",
        0,
        {"v1": 4, "v2": 1},
        weights=(80, 20),
        policy=policy(paused=True),
        ready={"v1": 4, "v2": 1},
        samples=BAD,
        conditions=(reasons.PAUSED,),
    ),
    Case(
        "paused, a third version waits for the resume",
        at_step(0, phase="Paused"),
        "Paused",
        0,
        {"v1": 4, "v2": 1},
        weights=(80, 20),
        policy=policy("v3", paused=True),
        ready={"v1": 4, "v2": 1},
        conditions=(reasons.PAUSED,),
    ),
    Case(
        "paused, resume restarts the step's hold",
        at_step(0, phase="Paused"),
        "Progressing",
        0,
        {"v1": 4, "v2": 1},
        weights=(80, 20),
        ready={"v1": 4, "v2": 1},
        events=(reasons.RESUMED,),
        conditions=(reasons.CANARY_STEP,),
    ),
    Case(
        "paused, abort is not held",
        at_step(0, phase="Paused"),
        "RollingBack",
        0,
        {"v1": 4, "v2": 0},
        weights=(80, 20),
        policy=policy(paused=True),
        ready={"v1": 4, "v2": 1},
        observation={"abort_requested": True},
        actions=(
            history("v2", "Aborted", reasons.ABORTED),
            AcknowledgeRequest("abort"),
        ),
        events=(reasons.ROLLING_BACK,),
        conditions=(reasons.ROLLING_BACK,),
    ),
    Case(
        "paused, target back to the stable version is not held",
        at_step(0, phase="Paused"),
        "RollingBack",
        0,
        {"v1": 4, "v2": 0},
        weights=(80, 20),
        policy=policy("v1", paused=True),
        ready={"v1": 4, "v2": 1},
        actions=(history("v2", "Aborted", reasons.TARGET_REVERTED),),
        events=(reasons.ROLLING_BACK,),
        conditions=(reasons.ROLLING_BACK,),
    ),
    # -- Promoting ---------------------------------------------------------------------------
    Case(
        "promoting waits for the new version's replicas",
        PROMOTING_FROM_LAST,
        "Promoting",
        1,
        {"v1": 2, "v2": 4},
        weights=(40, 60),
        ready={"v1": 2, "v2": 3},
        conditions=(reasons.PROMOTING,),
    ),
    Case(
        "promoting, new version unschedulable waits on GPUs",
        PROMOTING_FROM_LAST,
        "Promoting",
        1,
        {"v1": 2, "v2": 4},
        weights=(50, 50),
        ready={"v1": 2, "v2": 2},
        observation={"canary_unschedulable": "Insufficient nvidia.com/gpu"},
        conditions=(reasons.INSUFFICIENT_GPU,),
    ),
    Case(
        "promoting, gatewayAPI keeps the last step's weight until ready",
        PROMOTING_FROM_LAST,
        "Promoting",
        1,
        {"v1": 4, "v2": 4},
        weights=(50, 50),
        policy=policy(router="gatewayAPI", gateway_ref={"name": "gw"}),
        ready={"v1": 4, "v2": 2},
        conditions=(reasons.PROMOTING,),
    ),
    Case(
        "promoting, new version ready: it is stable, the old one goes",
        PROMOTING_FROM_LAST,
        "Stable",
        None,
        {"v1": 0, "v2": 4},
        ready={"v1": 2, "v2": 4},
        events=(reasons.PROMOTED,),
    ),
    Case(
        "promoting is committed: an abort is acknowledged and ignored",
        PROMOTING_FROM_LAST,
        "Promoting",
        1,
        {"v1": 2, "v2": 4},
        weights=(50, 50),
        ready={"v1": 2, "v2": 2},
        observation={"abort_requested": True},
        actions=(AcknowledgeRequest("abort"),),
        conditions=(reasons.PROMOTING,),
    ),
    # -- RollingBack -------------------------------------------------------------------------
    Case(
        "rolling back waits for the canary's pods to go",
        ROLLING_BACK,
        "RollingBack",
        0,
        {"v1": 4, "v2": 0},
        weights=(80, 20),
        ready={"v1": 4, "v2": 1},
        conditions=(reasons.ROLLING_BACK, reasons.ANALYSIS_FAILED),
    ),
    Case(
        "rolling back, canary gone: rolled back",
        ROLLING_BACK,
        "RolledBack",
        0,
        {"v1": 4, "v2": 0},
        events=(reasons.ROLLED_BACK,),
        conditions=(reasons.ROLLED_BACK, reasons.ANALYSIS_FAILED),
    ),
    Case(
        "rolling back to a reverted target ends Stable",
        replace(ROLLING_BACK, rollback_reason=reasons.TARGET_REVERTED),
        "Stable",
        None,
        {"v1": 4, "v2": 0},
        policy=policy("v1"),
        events=(reasons.ROLLED_BACK,),
    ),
    Case(
        "rolling back, target set to the canary again starts over",
        replace(ROLLING_BACK, rollback_reason=reasons.TARGET_REVERTED),
        "Progressing",
        0,
        {"v1": 4, "v2": 1},
        weights=(80, 20),
        ready={"v1": 4, "v2": 1},
        events=(reasons.ROLLOUT_STARTED,),
        conditions=(reasons.CANARY_SCALING,),
    ),
    Case(
        "rolling back, a third version starts at once (history already written)",
        ROLLING_BACK,
        "Progressing",
        0,
        {"v1": 4, "v2": 0, "v3": 1},
        policy=policy("v3"),
        ready={"v1": 4, "v2": 1},
        events=(reasons.SUPERSEDED, reasons.ROLLOUT_STARTED),
        conditions=(reasons.CANARY_SCALING,),
    ),
    Case(
        "rolling back, a third version while paused waits; the rollback goes on",
        ROLLING_BACK,
        "RollingBack",
        0,
        {"v1": 4, "v2": 0},
        weights=(80, 20),
        policy=policy("v3", paused=True),
        ready={"v1": 4, "v2": 1},
        conditions=(reasons.ROLLING_BACK, reasons.ANALYSIS_FAILED),
    ),
    # -- RolledBack --------------------------------------------------------------------------
    Case(
        "rolled back stays rolled back",
        ROLLED_BACK,
        "RolledBack",
        0,
        {"v1": 4, "v2": 0},
        conditions=(reasons.ROLLED_BACK, reasons.ANALYSIS_FAILED),
    ),
    Case(
        "rolled back, retry starts again from step 0",
        ROLLED_BACK,
        "Progressing",
        0,
        {"v1": 4, "v2": 1},
        observation={"retry_requested": True},
        actions=(AcknowledgeRequest("retry"),),
        events=(reasons.ROLLOUT_STARTED,),
        conditions=(reasons.CANARY_SCALING,),
    ),
    Case(
        "rolled back, retry refused by the accuracy gate",
        ROLLED_BACK,
        "RolledBack",
        0,
        {"v1": 4, "v2": 0},
        policy=policy(max_accuracy_drop=0.01),
        observation={"retry_requested": True, "accuracy_drop": 0.02},
        actions=(AcknowledgeRequest("retry"),),
        conditions=(reasons.ACCURACY_GATE_FAILED, reasons.ACCURACY_GATE_FAILED),
    ),
    Case(
        "rolled back, retry while paused waits",
        ROLLED_BACK,
        "RolledBack",
        0,
        {"v1": 4, "v2": 0},
        policy=policy(paused=True),
        observation={"retry_requested": True},
        actions=(AcknowledgeRequest("retry"),),
        conditions=(reasons.PAUSED,),
    ),
    Case(
        "rolled back, target set to the stable version: stable",
        ROLLED_BACK,
        "Stable",
        None,
        {"v1": 4},
        policy=policy("v1"),
    ),
    Case(
        "rolled back, a third version starts",
        ROLLED_BACK,
        "Progressing",
        0,
        {"v1": 4, "v3": 1},
        policy=policy("v3"),
        events=(reasons.ROLLOUT_STARTED,),
        conditions=(reasons.CANARY_SCALING,),
    ),
]


def run(case: Case) -> Decision:
    observation = Observation(ready=case.ready, **case.observation)
    return decide(case.policy, case.state, observation, case.samples, NOW)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_transition(case: Case) -> None:
    decision = run(case)
    assert (decision.phase, decision.step) == (case.phase, case.step)
    assert dict(decision.replicas) == case.replicas
    assert (decision.weights.stable, decision.weights.canary) == case.weights
    assert decision.actions == case.actions
    assert tuple(e.reason for e in decision.events) == case.events
    assert tuple(c.reason for c in decision.conditions) == case.conditions


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_recorded_state_is_a_fixed_point_at_the_same_instant(case: Case) -> None:
    """Deciding again with the state just recorded never repeats a history record or an
    analysis: what the first call did is not done twice."""
    first = run(case)
    again = decide(case.policy, first.state, Observation(ready=case.ready), case.samples, NOW)
    records = [a for a in again.actions if isinstance(a, RecordHistory)]
    assert not any(r in first.actions for r in records)
    if first.state.last_analysis is not None and first.state.last_analysis.time == NOW:
        assert again.state.last_analysis == first.state.last_analysis
        assert again.state.failed_analyses == first.state.failed_analyses


def test_every_phase_has_a_row() -> None:
    assert {c.state.phase for c in CASES} >= {
        "Stable",
        "Progressing",
        "Paused",
        "Promoting",
        "RollingBack",
        "RolledBack",
    }


def test_step_started_records_now_and_next_check() -> None:
    decision = run(
        CASES[
            [c.name for c in CASES].index(
                "step 0, canary ready starts the step (replica ratio 1:4 is 20%)"
            )
        ]
    )
    assert decision.state.step_started_at == NOW
    assert decision.next_check == NOW + dt.timedelta(seconds=30)
    # 10% asked; one canary replica beside four stable ones gives 20%
    assert (decision.weights.stable, decision.weights.canary) == (80, 20)


def test_failed_analysis_is_recorded_with_its_message() -> None:
    decision = decide(policy(), at_step(0), Observation(ready={"v1": 4, "v2": 1}), BAD, NOW)
    last = decision.state.last_analysis
    assert last is not None and last.verdict == "Failed" and last.time == NOW
    assert last.error_rate == 0.2
    assert "error rate 20.00% > 1.00%" in last.message
    assert decision.state.failed_analyses == 1
    assert "1/2 failed analyses" in decision.events[0].message


def test_pause_longer_than_interval_analyses_each_interval_and_at_the_hold_end() -> None:
    paused = policy(steps=[{"weight": 10, "pause": "45s"}, {"weight": 50}])
    started = NOW - dt.timedelta(seconds=30)
    state = at_step(0, started)
    obs = Observation(ready={"v1": 4, "v2": 1})
    first = decide(paused, state, obs, GOOD, NOW)  # 30s: analysed, passed, still holding
    assert (first.phase, first.step) == ("Progressing", 0)
    assert first.next_check == started + dt.timedelta(seconds=45)
    assert not analysis_due(paused, first.state, NOW + dt.timedelta(seconds=14))
    assert analysis_due(paused, first.state, NOW + dt.timedelta(seconds=15))
    later = decide(paused, first.state, obs, GOOD, NOW + dt.timedelta(seconds=15))
    assert later.step == 1


def test_resume_restarts_the_hold_from_now() -> None:
    decision = decide(
        policy(), at_step(0, phase="Paused"), Observation(ready={"v1": 4, "v2": 1}), GOOD, NOW
    )
    assert decision.state.step_started_at == NOW
    assert decision.next_check == NOW + dt.timedelta(seconds=30)


def test_default_steps_are_10_then_50_percent() -> None:
    assert [s.weight for s in policy().steps] == [10, 50]


def test_steps_shortened_mid_rollout_clamp_to_the_last_step() -> None:
    short = policy(steps=[{"weight": 25}])
    decision = decide(short, at_step(1, None), Observation(ready={"v1": 4}), GOOD, NOW)
    assert decision.step == 0
    assert dict(decision.replicas) == {"v1": 4, "v2": 1}


def test_inconsistent_state_without_canary_reads_as_stable() -> None:
    broken = RolloutState(phase="Progressing", stable="v1", step=3)
    decision = decide(policy("v1"), broken, Observation(ready={"v1": 4}), None, NOW)
    assert decision.phase == "Stable" and decision.state.canary is None


def test_rolled_back_conditions_explain_and_offer_retry() -> None:
    failed = replace(ROLLED_BACK, last_analysis=analysed("Failed", STARTED))
    decision = decide(policy(), failed, Observation(ready={"v1": 4}), None, NOW)
    progressing, degraded = decision.conditions
    assert (progressing.status, degraded.status) == ("False", "True")
    assert "analysis failed 2 times in a row" in degraded.message
    assert "retry" in progressing.message


def test_accuracy_gate_message_names_value_and_threshold() -> None:
    decision = decide(
        policy(max_accuracy_drop=0.01),
        STABLE,
        Observation(ready={"v1": 4}, accuracy_drop=0.05),
        None,
        NOW,
    )
    assert "0.0500" in decision.conditions[0].message
    assert "0.0100" in decision.conditions[0].message


def drive(
    p: Policy,
    samples: Samples | None,
    ticks: int,
    seconds: int = 15,
    stuck: bool = False,
) -> list[Decision]:
    """Run the machine against pods that follow every decision at once (or, `stuck`, a
    canary whose pods never schedule), from Stable on v1."""
    state, ready, now, seen = STABLE, {"v1": p.desired_replicas}, NOW, []
    for _ in range(ticks):
        canary_stuck = "Insufficient nvidia.com/gpu" if stuck else None
        decision = decide(p, state, Observation(ready, canary_stuck), samples, now)
        seen.append(decision)
        state = decision.state
        ready = {v: (0 if stuck and v == state.canary else n) for v, n in decision.replicas.items()}
        now += dt.timedelta(seconds=seconds)
    return seen


def test_story_a_good_canary_is_promoted() -> None:
    seen = drive(policy(), GOOD, ticks=12)
    events = [e.reason for d in seen for e in d.events]
    assert events == [
        reasons.ROLLOUT_STARTED,
        reasons.CANARY_STEP,
        reasons.ANALYSIS_PASSED,
        reasons.CANARY_STEP,
        reasons.PROMOTING,
        reasons.PROMOTED,
    ]
    assert (seen[-1].phase, seen[-1].state.stable, dict(seen[-1].replicas)) == (
        "Stable",
        "v2",
        {"v2": 4},
    )
    records = [a.record for d in seen for a in d.actions if isinstance(a, RecordHistory)]
    assert [(r.to_version, r.result) for r in records] == [("v2", "Promoted")]


def test_story_a_bad_canary_is_rolled_back_with_traffic_all_on_stable() -> None:
    seen = drive(policy(router="gatewayAPI", gateway_ref={"name": "gw"}), BAD, ticks=12)
    events = [e.reason for d in seen for e in d.events]
    assert events == [
        reasons.ROLLOUT_STARTED,
        reasons.CANARY_STEP,
        reasons.ANALYSIS_FAILED,
        reasons.ROLLING_BACK,
        reasons.ROLLED_BACK,
    ]
    last = seen[-1]
    assert last.phase == "RolledBack"
    assert (last.weights.stable, last.weights.canary) == (100, 0)
    assert dict(last.replicas) == {"v1": 4, "v2": 0}
    assert [c.reason for c in last.conditions] == [reasons.ROLLED_BACK, reasons.ANALYSIS_FAILED]


def test_story_a_gpu_shortage_waits_and_never_fails() -> None:
    """It waits (InsufficientGPU) for the whole progressDeadline, then stalls loudly:
    paused, never rolled back, no failed analysis."""
    seen = drive(policy(progress_deadline="2h"), BAD, ticks=200, seconds=60, stuck=True)
    waiting, stalled = seen[:120], seen[120:]
    assert {d.phase for d in waiting} == {"Progressing"}
    assert waiting[-1].conditions[0].reason == reasons.INSUFFICIENT_GPU
    assert {d.phase for d in stalled} == {"Paused"}
    assert [e for d in seen for e in d.events if e.type == "Warning"] == list(stalled[0].events)
    assert stalled[0].events[0].reason == reasons.ROLLOUT_DEADLINE_EXCEEDED
    assert "never became ready" in stalled[0].events[0].message
    assert [c.reason for c in seen[-1].conditions] == [reasons.ROLLOUT_DEADLINE_EXCEEDED] * 2
    assert seen[-1].state.failed_analyses == 0
    assert not any(d.phase in ("RollingBack", "RolledBack") for d in seen)


def test_story_no_traffic_stalls_after_the_inconclusive_limit_then_a_retry_resumes() -> None:
    """A model with no traffic: ten Inconclusive analyses at the default 30s interval, then
    paused with one Warning; the retry starts the count again."""
    seen = drive(policy(), THIN, ticks=40, seconds=15)
    paused = [d for d in seen if d.phase == "Paused"]
    assert paused and paused[0].state.stall_reason == reasons.INCONCLUSIVE_LIMIT_REACHED
    assert paused[0].state.inconclusive_analyses == 10
    warnings = [e for d in seen for e in d.events if e.type == "Warning"]
    assert [e.reason for e in warnings] == [reasons.INCONCLUSIVE_LIMIT_REACHED]
    assert "10 inconclusive analyses in a row" in warnings[0].message
    assert seen[-1].next_check is None  # a stall waits for a person, not for a timer
    resumed = decide(
        policy(),
        seen[-1].state,
        Observation({"v1": 4, "v2": 1}, retry_requested=True),
        None,
        NOW + dt.timedelta(hours=1),
    )
    assert resumed.phase == "Progressing"
    assert (resumed.state.inconclusive_analyses, resumed.state.stall_reason) == (0, None)
    assert resumed.state.progressed_at == NOW + dt.timedelta(hours=1)


def test_a_passed_or_failed_analysis_ends_an_inconclusive_run() -> None:
    for samples in (GOOD, BAD):
        decision = decide(
            policy(steps=[{"weight": 10, "pause": "5m"}]),
            at_step(0, inconclusive_analyses=7),
            Observation({"v1": 4, "v2": 1}),
            samples,
            NOW,
        )
        assert decision.state.inconclusive_analyses == 0


def test_progress_deadline_counts_from_the_last_progress() -> None:
    """A passed analysis is progress: a long hold with passing analyses never stalls."""
    p = policy(progress_deadline="10m", steps=[{"weight": 10, "pause": "1h"}])
    state = at_step(0, started=NOW - dt.timedelta(minutes=50), progressed_at=None)
    decision = decide(p, state, Observation({"v1": 4, "v2": 1}), GOOD, NOW)
    assert decision.phase == "Progressing"
    assert decision.state.progressed_at == NOW
    assert decision.next_check is not None and decision.next_check <= NOW + dt.timedelta(minutes=10)
    # without progress, the check comes no later than the deadline ...
    p = policy(progress_deadline="20m")
    waiting = decide(p, at_step(0, started=None), Observation({"v1": 4}), None, NOW)
    assert waiting.next_check == STARTED + dt.timedelta(minutes=20)
    # ... where it stalls
    late = decide(p, waiting.state, Observation({"v1": 4}), None, waiting.next_check)
    assert late.state.stall_reason == reasons.ROLLOUT_DEADLINE_EXCEEDED
    # a state recorded before progressedAt existed counts from its step's start
    state = at_step(
        0, started=NOW - dt.timedelta(minutes=15), started_at=NOW - dt.timedelta(days=1)
    )
    thin = decide(p, state, Observation({"v1": 4, "v2": 1}), THIN, NOW)
    assert thin.phase == "Progressing"


def test_needs_metrics() -> None:
    assert needs_metrics(policy())
    assert not needs_metrics(policy(strategy="Immediate"))
    assert not needs_metrics(policy(analysis={"enabled": False}))


def test_analysis_is_never_due_when_disabled() -> None:
    assert analysis_due(policy(), at_step(0), NOW)
    assert not analysis_due(policy(analysis={"enabled": False}), at_step(0), NOW)


def test_no_metrics_source_message_says_what_to_set() -> None:
    decision = decide(replace(policy(), metrics_available=False), STABLE, Observation(), None, NOW)
    message = decision.conditions[0].message
    assert "metrics.source.url" in message and "analysis.enabled: false" in message
