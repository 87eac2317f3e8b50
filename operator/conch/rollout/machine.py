"""The rollout state machine: `decide(policy, state, observation, samples, now) -> Decision`.

Pure and total: no I/O, no clock, no randomness, no exceptions for anything a cluster can
show (only a malformed duration in the spec raises InvalidSpec). Its only memory is the
`RolloutState` that status records, so a restarted operator decides exactly as before,
and a second call with the recorded state does not repeat the first call's actions.

One transition per call; the next call takes the next one. The edges:

    from         to           when
    (nothing)    Stable       first reconcile: the target is simply served
    Stable       Progressing  a new target passed the accuracy gate, not paused
    Stable       Promoting    a new target with strategy Immediate, or no replicas
    Progressing  Progressing  canary ready (the step starts), analysis passed (next step),
                              a third version (start over at step 0)
    Progressing  Paused       spec.rollout.paused
    Progressing  Promoting    the last step passed, strategy switched to Immediate, or a
                              promote request (the remaining steps are skipped)
    Progressing  RollingBack  failureLimit failed analyses in a row, abort, target
                              reverted, a third version refused by the accuracy gate,
                              a stall with onStall RollBack
    Progressing  Paused       a stall with onStall Pause (stallReason set)
    Paused       Progressing  resumed (the step's hold starts again), or resumed with a
                              third version (Promoting if Immediate); a stall resumes
                              only on a retry request
    Paused       RollingBack  abort, target reverted (rollbacks are never held)
    Paused       Promoting    a promote request (a person's explicit request, like abort)
    Promoting    Stable       the new version has all its replicas ready
    RollingBack  RolledBack   no canary pod is ready any more
    RollingBack  Stable       ... and the target is the stable version again
    RollingBack  Progressing  a third version (or the canary again after a revert)
    RolledBack   Progressing  retry, or a third version (Promoting if Immediate)
    RolledBack   Stable       the target is the stable version again

- Stable: a new spec.modelVersion is gated on accuracy (AccuracyGateFailed keeps the old
  version) and on spec.rollout.paused, then starts at step 0 (or promotes at once with
  strategy Immediate, or when nothing is served).
- Progressing, per step: scale the canary up (the stable version shrinks only once the
  canary is ready), then set the step's weight and hold it for the step's pause (one
  analysis interval when unset). Analyses run every interval and once more when the hold
  ends; a Passed one after the hold advances. Failed counts toward failureLimit (then
  RollingBack); Inconclusive neither advances nor counts toward it. A GPU shortage only
  waits. With `analysis.enabled: false` a step simply ends with its hold.
- No silent stalls: inconclusiveLimit Inconclusive analyses in a row, or no progress
  (start, canary ready, analysis passed, resume) within progressDeadline, is a stall;
  onStall says whether it pauses (until a retry request) or rolls back. A canary that
  needs analysis does not start when the operator has no metrics source (NoMetricsSource).
- Paused holds everything: no analysis, no advance. Rollbacks (abort, target reverted)
  are never held; a move to a third version waits for the resume.
- A third version mid-rollout abandons the canary (to zero) and starts over toward it.
- RollingBack: traffic all to stable and the canary to zero at once; RolledBack once no
  canary pod is ready. A retry request starts again from step 0.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import replace
from typing import Literal

from conch import reasons
from conch.api.modelservice import RolloutRecord
from conch.rollout import analysis, gate
from conch.rollout.conditions import (
    WARNING_REASONS,
    Hints,
    promoting_conditions,
    rollback_conditions,
    rollback_detail,
    stall_detail,
    step_conditions,
    step_label,
    weight_text,
)
from conch.rollout.context import (
    Context,
    due,
    next_analysis,
    progress_deadline,
    step_analysis,
)
from conch.rollout.state import (
    ALL_STABLE,
    AcknowledgeRequest,
    Action,
    ConditionHint,
    Decision,
    Event,
    Observation,
    Policy,
    RecordHistory,
    RolloutState,
    Samples,
    Weights,
    needs_metrics,
)
from conch.rollout.weights import (
    gateway_weights,
    surge_stable,
)

HistoryResult = Literal["Promoted", "RolledBack", "Aborted"]
EventType = Literal["Normal", "Warning"]

Refusal = Hints
"""Why a rollout did not start: the conditions to show while it waits."""


def decide(
    policy: Policy,
    state: RolloutState,
    observation: Observation,
    samples: Samples | None,
    now: dt.datetime,
) -> Decision:
    """The next step of the rollout. `now` is timezone-aware; `samples` are the canary's
    metrics over the last analysis interval (None when not fetched: see `analysis_due`)."""
    ctx = Context(policy, _normalize(policy, state), observation, samples, now)
    decision = _dispatch(ctx)
    acks: list[Action] = []
    if observation.abort_requested:
        acks.append(AcknowledgeRequest("abort"))
    if observation.retry_requested:
        acks.append(AcknowledgeRequest("retry"))
    if observation.promote_requested:
        acks.append(AcknowledgeRequest("promote"))
    return replace(decision, actions=decision.actions + tuple(acks)) if acks else decision


def analysis_due(policy: Policy, state: RolloutState, now: dt.datetime) -> bool:
    """Whether `decide` at `now` will judge samples: fetch metrics only then."""
    ctx = Context(policy, _normalize(policy, state), Observation(), None, now)
    return ctx.state.phase == "Progressing" and needs_metrics(policy) and due(ctx, ctx.state)


def _normalize(policy: Policy, state: RolloutState) -> RolloutState:
    """Make a recorded state consistent: a rollout without a canary is Stable, and a step
    index beyond the spec's steps (shortened mid-rollout) is the last step."""
    if state.stable is None:
        return state
    if state.phase == "Stable" or state.canary is None or state.canary == state.stable:
        return RolloutState(
            phase="Stable",
            stable=state.stable,
            started_at=state.started_at,
            last_analysis=state.last_analysis,
        )
    last = len(policy.steps) - 1
    if state.phase in ("Progressing", "Paused"):
        step = min(max(state.step or 0, 0), last)
        return state if step == state.step else replace(state, step=step)
    if state.phase == "Promoting" and state.step is not None:
        step = min(max(state.step, 0), last)
        return state if step == state.step else replace(state, step=step)
    return state


def _dispatch(ctx: Context) -> Decision:
    phase = ctx.state.phase
    if ctx.state.stable is None:
        return _first(ctx)
    if phase == "Stable":
        return _stable(ctx)
    if phase in ("Progressing", "Paused"):
        return _progressing(ctx)
    if phase == "Promoting":
        return _promoting(ctx)
    if phase == "RollingBack":
        return _rolling_back(ctx)
    return _rolled_back(ctx)


# Phase handlers: each returns `_settle(new state)` plus the actions and events of the
# transition it took, if any.


def _first(ctx: Context) -> Decision:
    """Nothing served yet: the target is the stable version; there is nothing to roll from."""
    return _settle(ctx, RolloutState(phase="Stable", stable=ctx.policy.target))


def _stable(ctx: Context) -> Decision:
    if ctx.policy.target == ctx.state.stable:
        return _settle(ctx, ctx.state)
    started = _begin(ctx, abandoned=None)
    if isinstance(started, Decision):
        return started
    return replace(_settle(ctx, ctx.state), conditions=started)


def _progressing(ctx: Context) -> Decision:
    state, policy = ctx.state, ctx.policy
    if policy.target == state.stable:
        return _enter_rollback(ctx, state, reasons.TARGET_REVERTED, "Aborted")
    if ctx.observation.abort_requested:
        return _enter_rollback(ctx, state, reasons.ABORTED, "Aborted")
    if policy.target != state.canary and not policy.rollout.paused:
        started = _begin(ctx, abandoned=state.canary)
        if isinstance(started, Decision):
            return started
        return _enter_rollback(ctx, state, reasons.SUPERSEDED, "Aborted")
    if ctx.observation.promote_requested and policy.target == state.canary:
        return _enter_promoting(ctx, state, None, reasons.PROMOTE_REQUESTED)
    if policy.rollout.paused:
        if state.phase == "Paused":
            return _settle(ctx, state)
        paused = replace(state, phase="Paused")
        return _then(
            _settle(ctx, paused),
            events=(
                Event("Normal", reasons.PAUSED, f"rollout paused at {step_label(ctx, paused)}"),
            ),
        )
    if state.phase == "Paused":
        if state.stall_reason is not None and not ctx.observation.retry_requested:
            return _settle(ctx, state)  # a stall waits for a person
        restart = ctx.now if state.step_started_at is not None else None
        resumed = replace(
            state,
            phase="Progressing",
            step_started_at=restart,
            progressed_at=ctx.now,
            inconclusive_analyses=0,
            stall_reason=None,
        )
        message = f"rollout resumed at {step_label(ctx, resumed)}; its pause starts again"
        return _then(_settle(ctx, resumed), events=(Event("Normal", reasons.RESUMED, message),))
    if policy.rollout.strategy == "Immediate":
        return _enter_promoting(ctx, state, None, reasons.IMMEDIATE)
    return _step(ctx)


def _step(ctx: Context) -> Decision:
    """One canary step, then the progress deadline: a call that made no progress (and did
    not leave Progressing) past spec.rollout.progressDeadline stalls. Progress made late
    still counts: an operator that was down does not stall a rollout that can move on."""
    decision = _step_once(ctx)
    state = decision.state
    if state.phase != "Progressing" or state.progressed_at == ctx.now:
        return decision
    deadline = progress_deadline(ctx, state)
    if deadline is None or ctx.now < deadline:
        return decision
    stalled = _stall(ctx, state, reasons.ROLLOUT_DEADLINE_EXCEEDED)
    return _then(
        stalled,
        actions=decision.actions + stalled.actions,
        events=decision.events + stalled.events,
    )


def _step_once(ctx: Context) -> Decision:
    """One canary step: scale up, set the weight, hold, analyse, advance."""
    state = ctx.state
    assert state.stable is not None and state.canary is not None and state.step is not None
    index = state.step
    plan = ctx.plan(index)
    if ctx.desired > 0 and plan.canary == 0:
        return _settle(ctx, state)  # the GPU budget leaves no room: the condition says so
    if state.step_started_at is None:
        if ctx.observation.ready_of(state.canary) < plan.canary:
            return _settle(ctx, state)
        started = replace(state, step_started_at=ctx.now, progressed_at=ctx.now)
        message = f"{step_label(ctx, started)}: canary {state.canary} at {weight_text(ctx, plan)}"
        return _then(_settle(ctx, started), events=(Event("Normal", reasons.CANARY_STEP, message),))
    if not due(ctx, state):
        return _settle(ctx, state)
    if not ctx.policy.rollout.analysis.enabled:
        return _advance(ctx, state, "its pause passed; analysis is disabled")
    verdict = analysis.evaluate(ctx.policy.rollout.analysis, ctx.samples)
    result = analysis.to_result(verdict, ctx.samples, ctx.now)
    limit = ctx.policy.rollout.analysis.failure_limit
    if verdict.verdict == "Failed":
        failed = replace(
            state,
            failed_analyses=state.failed_analyses + 1,
            inconclusive_analyses=0,
            last_analysis=result,
        )
        if failed.failed_analyses >= limit:
            return _enter_rollback(ctx, failed, reasons.ANALYSIS_FAILED, "RolledBack")
        message = f"{failed.failed_analyses}/{limit} failed analyses in a row: {verdict.message}"
        return _then(
            _settle(ctx, failed),
            events=(Event("Warning", reasons.ANALYSIS_FAILED, message),),
        )
    if verdict.verdict == "Inconclusive":
        count_unsure = state.inconclusive_analyses + 1
        unsure = replace(state, last_analysis=result, inconclusive_analyses=count_unsure)
        if count_unsure >= ctx.policy.rollout.analysis.inconclusive_limit:
            return _stall(ctx, unsure, reasons.INCONCLUSIVE_LIMIT_REACHED)
        previous = step_analysis(state)
        if previous is not None and previous.verdict == "Inconclusive":
            return _settle(ctx, unsure)  # said once per run of inconclusive analyses
        return _then(
            _settle(ctx, unsure),
            events=(Event("Normal", reasons.ANALYSIS_INCONCLUSIVE, verdict.message),),
        )
    passed = replace(
        state,
        failed_analyses=0,
        inconclusive_analyses=0,
        last_analysis=result,
        progressed_at=ctx.now,
    )
    assert state.step_started_at is not None
    if ctx.now < state.step_started_at + ctx.hold(index):
        return _settle(ctx, passed)
    return _advance(ctx, passed, verdict.message)


def _advance(ctx: Context, state: RolloutState, why: str) -> Decision:
    """The step is done (`why`): on to the next step, or promote after the last one."""
    assert state.canary is not None and state.step is not None
    index, count = state.step, len(ctx.policy.steps)
    if index + 1 == count:
        return _enter_promoting(ctx, state, index, reasons.ANALYSIS_PASSED)
    advanced = replace(
        state,
        step=index + 1,
        step_started_at=None,
        inconclusive_analyses=0,
        progressed_at=ctx.now,
    )
    message = f"step {index + 1}/{count} passed ({why}); next: {step_label(ctx, advanced)}"
    return _then(
        _settle(ctx, advanced), events=(Event("Normal", reasons.ANALYSIS_PASSED, message),)
    )


def _stall(ctx: Context, state: RolloutState, reason: str) -> Decision:
    """No verdict or no progress for too long: pause for a person, or roll back
    (spec.rollout.onStall). Either way a Warning says why."""
    if ctx.policy.rollout.on_stall == "RollBack":
        return _enter_rollback(ctx, state, reason, "RolledBack")
    stalled = replace(state, phase="Paused", stall_reason=reason)
    message = (
        f"rollout paused at {step_label(ctx, stalled)}: {stall_detail(stalled)}; "
        "request a retry to resume"
    )
    return _then(_settle(ctx, stalled), events=(Event("Warning", reason, message),))


def _promoting(ctx: Context) -> Decision:
    """Committed: wait for the new version's full replica count, then make it stable.
    Aborts and target changes wait for the Stable phase."""
    state = ctx.state
    assert state.stable is not None and state.canary is not None
    if ctx.observation.ready_of(state.canary) < ctx.desired:
        return _settle(ctx, state)
    promoted = RolloutState(
        phase="Stable",
        stable=state.canary,
        started_at=state.started_at,
        last_analysis=state.last_analysis,
    )
    message = f"{state.canary} is stable at 100%; {state.stable} scaled to zero"
    return _then(
        _settle(ctx, promoted),
        replicas={state.stable: 0},
        events=(Event("Normal", reasons.PROMOTED, message),),
    )


def _rolling_back(ctx: Context) -> Decision:
    state, target = ctx.state, ctx.policy.target
    assert state.stable is not None and state.canary is not None
    restart = target == state.canary and state.rollback_reason == reasons.TARGET_REVERTED
    if target not in (state.stable, state.canary) or restart:
        started = _begin(ctx, abandoned=None if restart else state.canary, record=False)
        if isinstance(started, Decision):
            return started
    if ctx.observation.ready_of(state.canary) > 0:
        return _settle(ctx, state)
    if target == state.stable:
        done = RolloutState(
            phase="Stable",
            stable=state.stable,
            started_at=state.started_at,
            last_analysis=state.last_analysis,
        )
        message = f"{state.canary} removed; {state.stable} serves 100%"
        return _then(
            _settle(ctx, done),
            replicas={state.canary: 0},
            events=(Event("Normal", reasons.ROLLED_BACK, message),),
        )
    rolled = replace(state, phase="RolledBack")
    kind: EventType = "Warning" if state.rollback_reason in WARNING_REASONS else "Normal"
    message = f"rolled back from {state.canary} to {state.stable}: {rollback_detail(rolled)}"
    return _then(_settle(ctx, rolled), events=(Event(kind, reasons.ROLLED_BACK, message),))


def _rolled_back(ctx: Context) -> Decision:
    state, target = ctx.state, ctx.policy.target
    if target == state.stable:
        stable = RolloutState(
            phase="Stable",
            stable=state.stable,
            started_at=state.started_at,
            last_analysis=state.last_analysis,
        )
        return _settle(ctx, stable)
    if target == state.canary and not ctx.observation.retry_requested:
        return _settle(ctx, state)
    started = _begin(ctx, abandoned=None)
    if isinstance(started, Decision):
        return started
    return replace(_settle(ctx, state), conditions=started)


# Transitions shared by several phases.


def _begin(ctx: Context, abandoned: str | None, record: bool = True) -> Decision | Refusal:
    """Start a rollout from the stable version to the target, or say why it cannot start.

    `abandoned` is a canary that is no longer the target: it goes to zero replicas, and,
    when `record`, into the history as Aborted (Superseded).
    """
    policy, state, now = ctx.policy, ctx.state, ctx.now
    assert state.stable is not None
    stable, target = state.stable, policy.target
    why = gate.refusal(policy.rollout.max_accuracy_drop, ctx.observation.accuracy_drop, target)
    if why is not None:
        return (
            ConditionHint("Progressing", "False", reasons.ACCURACY_GATE_FAILED, why),
            ConditionHint("Degraded", "True", reasons.ACCURACY_GATE_FAILED, why),
        )
    if policy.rollout.paused:
        message = f"rollout from {stable} to {target} waits: spec.rollout.paused is set"
        return (ConditionHint("Progressing", "Unknown", reasons.PAUSED, message),)
    if needs_metrics(policy) and not policy.metrics_available and ctx.desired > 0:
        message = (
            f"rollout from {stable} to {target} does not start: the canary needs analysis and "
            "the operator has no metrics source (chart value metrics.source.url, flag "
            "--prometheus-url); set one, or set spec.rollout.analysis.enabled: false for "
            "timed steps, or strategy: Immediate"
        )
        return (
            ConditionHint("Progressing", "False", reasons.NO_METRICS_SOURCE, message),
            ConditionHint("Degraded", "True", reasons.NO_METRICS_SOURCE, message),
        )
    actions: list[Action] = []
    events: list[Event] = []
    replicas: dict[str, int] = {}
    if abandoned is not None:
        replicas[abandoned] = 0
        if record:
            actions.append(
                RecordHistory(_record(ctx, state, abandoned, "Aborted", reasons.SUPERSEDED))
            )
        message = f"canary {abandoned} abandoned: spec.modelVersion is now {target}"
        events.append(Event("Normal", reasons.SUPERSEDED, message))
    fresh = RolloutState(
        phase="Progressing",
        stable=stable,
        canary=target,
        step=0,
        started_at=now,
        progressed_at=now,
        last_analysis=state.last_analysis,
    )
    if policy.rollout.strategy == "Immediate" or ctx.desired == 0:
        why_now = reasons.IMMEDIATE if ctx.desired else reasons.SCALED_TO_ZERO
        promoting = _enter_promoting(ctx, fresh, None, why_now)
        return _then(
            promoting,
            replicas=replicas,
            actions=(*actions, *promoting.actions),
            events=(*events, *promoting.events),
        )
    steps = ", ".join(f"{s.weight}%" for s in policy.steps)
    events.append(
        Event("Normal", reasons.ROLLOUT_STARTED, f"rollout from {stable} to {target}: {steps}")
    )
    return _then(
        _settle(ctx, fresh), replicas=replicas, actions=tuple(actions), events=tuple(events)
    )


def _enter_promoting(ctx: Context, base: RolloutState, step: int | None, reason: str) -> Decision:
    assert base.stable is not None and base.canary is not None
    promoting = RolloutState(
        phase="Promoting",
        stable=base.stable,
        canary=base.canary,
        step=step,
        started_at=base.started_at,
        last_analysis=base.last_analysis,
    )
    record = _record(ctx, base, base.canary, "Promoted", reason)
    why = {
        reasons.ANALYSIS_PASSED: "every step passed its analysis",
        reasons.IMMEDIATE: "strategy is Immediate",
        reasons.PROMOTE_REQUESTED: "promotion was requested (the remaining steps are skipped)",
        reasons.SCALED_TO_ZERO: "no replicas serve, so there is no traffic to analyse",
    }.get(reason, reason)
    message = f"promoting {base.canary} over {base.stable}: {why}"
    return _then(
        _settle(ctx, promoting),
        actions=(RecordHistory(record),),
        events=(Event("Normal", reasons.PROMOTING, message),),
    )


def _enter_rollback(
    ctx: Context, base: RolloutState, reason: str, result: HistoryResult
) -> Decision:
    assert base.stable is not None and base.canary is not None
    rolling = replace(
        base, phase="RollingBack", step_started_at=None, rollback_reason=reason, stall_reason=None
    )
    record = RecordHistory(_record(ctx, base, base.canary, result, reason))
    kind: EventType = "Warning" if reason in WARNING_REASONS else "Normal"
    message = f"rolling back {base.canary} to {base.stable}: {rollback_detail(rolling)}"
    return _then(
        _settle(ctx, rolling),
        actions=(record,),
        events=(Event(kind, reasons.ROLLING_BACK, message),),
    )


def _record(
    ctx: Context, base: RolloutState, version: str, result: HistoryResult, reason: str
) -> RolloutRecord:
    return RolloutRecord(
        from_version=base.stable,
        to_version=version,
        result=result,
        reason=reason,
        started_at=base.started_at,
        finished_at=ctx.now,
    )


# The desired state of a recorded state: replicas, weights, conditions, next analysis.


def _settle(ctx: Context, state: RolloutState) -> Decision:
    """What `state` asks of the cluster, with no transition: what a repeated call returns."""
    stable, canary, desired = state.stable, state.canary, ctx.desired
    assert stable is not None
    if state.phase == "Stable" or canary is None:
        return Decision(state=state, replicas={stable: desired})
    weights = _weights(ctx, state)
    if state.phase in ("Progressing", "Paused"):
        assert state.step is not None
        plan = ctx.plan(state.step)
        held = (
            plan.stable
            if state.step_started_at is not None
            else surge_stable(
                ctx.stable_before(state.step), plan, desired, ctx.policy.extra_replicas
            )
        )
        return Decision(
            state=state,
            replicas={stable: held, canary: plan.canary},
            weights=weights,
            conditions=step_conditions(ctx, state, plan),
            next_check=_next_check(ctx, state),
        )
    if state.phase == "Promoting":
        before = desired if state.step is None else ctx.plan(state.step).stable
        extra = ctx.policy.extra_replicas
        keep = before if extra is None else min(before, extra)
        return Decision(
            state=state,
            replicas={canary: desired, stable: keep},
            weights=weights,
            conditions=promoting_conditions(ctx, state),
        )
    return Decision(
        state=state,
        replicas={stable: desired, canary: 0},
        weights=weights,
        conditions=rollback_conditions(state),
    )


def _then(
    decision: Decision,
    *,
    replicas: Mapping[str, int] | None = None,
    actions: tuple[Action, ...] = (),
    events: tuple[Event, ...] = (),
) -> Decision:
    """`decision` with a transition's actions and events (and replicas of versions it
    leaves behind, e.g. an abandoned canary at zero)."""
    merged = {**replicas, **decision.replicas} if replicas else decision.replicas
    return replace(decision, replicas=merged, actions=actions, events=events)


def _weights(ctx: Context, state: RolloutState) -> Weights:
    """The split users get: the router's, from what a route is asked for and what is ready."""
    if state.canary is None or state.stable is None:
        return ALL_STABLE
    return ctx.policy.traffic.achieved(
        _route_weights(state, ctx), ctx.observation.ready, state.stable, state.canary
    )


def _route_weights(state: RolloutState, ctx: Context) -> Weights:
    """The split a router that sets exact weights is asked for in this phase."""
    if state.phase in ("Progressing", "Paused") and state.step is not None:
        if state.step_started_at is not None:
            return gateway_weights(ctx.plan(state.step).achieved)
        return gateway_weights(0 if state.step == 0 else ctx.plan(state.step - 1).achieved)
    if state.phase == "Promoting" and state.step is not None:
        return gateway_weights(ctx.plan(state.step).achieved)
    return ALL_STABLE


def _next_check(ctx: Context, state: RolloutState) -> dt.datetime | None:
    """The next analysis, or the progress deadline when it comes first, while Progressing."""
    if state.phase != "Progressing":
        return None
    times = [t for t in (next_analysis(ctx, state), progress_deadline(ctx, state)) if t]
    return min(times, default=None)
