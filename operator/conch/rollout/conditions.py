"""Condition hints and the messages behind them. Recomputed from the recorded state on every
call, so a restarted operator says exactly what the previous one said. Pure."""

from __future__ import annotations

from typing import Final

from conch import reasons
from conch.rollout.context import Context, next_analysis, step_analysis
from conch.rollout.state import ConditionHint, ReplicaPlan, RolloutState

FAILURE_REASONS: Final = frozenset({reasons.ANALYSIS_FAILED})
"""Rollback reasons that mean the new version is bad (Warning events, Degraded=True)."""
STALL_REASONS: Final = frozenset(
    {reasons.INCONCLUSIVE_LIMIT_REACHED, reasons.ROLLOUT_DEADLINE_EXCEEDED}
)
"""The rollout could not decide or could not move on: no proof the version is bad, but
someone has to look (Warning events, Degraded=True)."""
WARNING_REASONS: Final = FAILURE_REASONS | STALL_REASONS

Hints = tuple[ConditionHint, ...]


def step_label(ctx: Context, state: RolloutState) -> str:
    assert state.step is not None
    step = ctx.policy.steps[state.step]
    return f"step {state.step + 1}/{len(ctx.policy.steps)} ({step.weight}%)"


def weight_text(ctx: Context, plan: ReplicaPlan) -> str:
    if ctx.exact or plan.achieved == plan.requested:
        return f"{plan.achieved}%"
    return (
        f"{plan.achieved}% (asked {plan.requested}%: {plan.canary} canary "
        f"and {plan.stable} stable replicas)"
    )


def step_conditions(ctx: Context, state: RolloutState, plan: ReplicaPlan) -> Hints:
    assert state.stable is not None and state.canary is not None
    label, canary, obs = step_label(ctx, state), state.canary, ctx.observation
    if state.phase == "Paused" and state.stall_reason is not None:
        message = (
            f"rollout from {state.stable} to {canary} stalled at {label}: {stall_detail(state)}; "
            "request a retry to resume, abort it, or change spec.modelVersion"
        )
        return (
            ConditionHint("Progressing", "False", state.stall_reason, message),
            ConditionHint("Degraded", "True", state.stall_reason, message),
        )
    if state.phase == "Paused":
        message = f"rollout from {state.stable} to {canary} paused at {label}"
        if ctx.policy.target not in (state.stable, canary):
            message += f"; spec.modelVersion {ctx.policy.target} starts once resumed"
        return (ConditionHint("Progressing", "Unknown", reasons.PAUSED, message),)
    if ctx.desired > 0 and plan.canary == 0:
        message = (
            f"{label}: maxExtraGPUs {ctx.policy.rollout.max_extra_gpus} leaves no room for one "
            f"canary replica ({ctx.policy.gpus_per_replica} GPUs) beside {plan.stable} stable "
            "replicas; raise spec.rollout.maxExtraGPUs or the replica count"
        )
        return (ConditionHint("Progressing", "False", reasons.GPU_BUDGET_EXCEEDED, message),)
    if state.step_started_at is None:
        ready = obs.ready_of(canary)
        message = f"{label}: waiting for canary {canary}: {ready}/{plan.canary} replicas ready"
        if obs.canary_unschedulable:
            message += f": {obs.canary_unschedulable}"
            return (ConditionHint("Progressing", "True", reasons.INSUFFICIENT_GPU, message),)
        return (ConditionHint("Progressing", "True", reasons.CANARY_SCALING, message),)
    message = f"{label}: canary {canary} at {weight_text(ctx, plan)}"
    due = next_analysis(ctx, state)
    if due is not None:
        message += f"; next analysis at {due.isoformat()}"
    last = step_analysis(state)
    if last is not None and last.verdict == "Failed":
        limit = ctx.policy.rollout.analysis.failure_limit
        message += f"; {state.failed_analyses}/{limit} failed: {last.message}"
        return (ConditionHint("Progressing", "True", reasons.ANALYSIS_FAILED, message),)
    if last is not None and last.verdict == "Inconclusive":
        message += f"; {last.message}"
        return (ConditionHint("Progressing", "True", reasons.ANALYSIS_INCONCLUSIVE, message),)
    return (ConditionHint("Progressing", "True", reasons.CANARY_STEP, message),)


def promoting_conditions(ctx: Context, state: RolloutState) -> Hints:
    assert state.canary is not None
    ready = ctx.observation.ready_of(state.canary)
    message = f"promoting {state.canary}: {ready}/{ctx.desired} replicas ready"
    if ctx.observation.canary_unschedulable:
        message += f": {ctx.observation.canary_unschedulable}"
        return (ConditionHint("Progressing", "True", reasons.INSUFFICIENT_GPU, message),)
    return (ConditionHint("Progressing", "True", reasons.PROMOTING, message),)


def stall_detail(state: RolloutState, reason: str | None = None) -> str:
    """Why a rollout stalled, from what the state recorded."""
    reason = reason or state.stall_reason or state.rollback_reason
    last = state.last_analysis
    if reason == reasons.INCONCLUSIVE_LIMIT_REACHED:
        return f"{state.inconclusive_analyses} inconclusive analyses in a row" + (
            f" (last: {last.message})" if last is not None else ""
        )
    since = state.progressed_at or state.started_at
    detail = "no progress within spec.rollout.progressDeadline"
    if since is not None:
        detail += f" since {since.isoformat()}"
    if state.step_started_at is None:
        detail += f"; canary {state.canary} never became ready at this step"
    elif last is not None and last.time >= state.step_started_at:
        detail += f"; last analysis {last.message}"
    return detail


def rollback_detail(state: RolloutState) -> str:
    reason = state.rollback_reason
    if reason == reasons.ANALYSIS_FAILED:
        last = state.last_analysis
        return f"analysis failed {state.failed_analyses} times in a row" + (
            f" ({last.message})" if last is not None else ""
        )
    if reason in STALL_REASONS:
        return stall_detail(state, reason)
    return {
        reasons.ABORTED: "aborted on request",
        reasons.TARGET_REVERTED: f"spec.modelVersion is back to {state.stable}",
        reasons.SUPERSEDED: f"{state.canary} is no longer the target",
    }.get(reason or "", reason or "rolled back")


def rollback_conditions(state: RolloutState) -> Hints:
    assert state.canary is not None
    detail = rollback_detail(state)
    reason = state.rollback_reason or reasons.ROLLED_BACK
    if state.phase == "RollingBack":
        message = f"rolling back {state.canary} to {state.stable}: {detail}"
        hints = [ConditionHint("Progressing", "True", reasons.ROLLING_BACK, message)]
        if reason in WARNING_REASONS:
            hints.append(ConditionHint("Degraded", "True", reason, message))
        return tuple(hints)
    message = (
        f"rolled back from {state.canary} to {state.stable}: {detail}; "
        "request a retry, or change spec.modelVersion"
    )
    return (
        ConditionHint("Progressing", "False", reasons.ROLLED_BACK, message),
        ConditionHint("Degraded", "True", reason, message),
    )
