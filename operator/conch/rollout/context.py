"""The inputs of one `decide` call, and what follows from them: replica plans per step,
hold durations and when the next analysis is due. Pure."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from conch.api.modelservice import AnalysisResult
from conch.rollout.duration import parse_duration
from conch.rollout.state import Observation, Policy, ReplicaPlan, RolloutState, Samples


@dataclass(frozen=True)
class Context:
    """The inputs of one call, with the derived values every phase needs."""

    policy: Policy
    state: RolloutState
    observation: Observation
    samples: Samples | None
    now: dt.datetime

    @property
    def desired(self) -> int:
        return max(0, self.policy.desired_replicas)

    @property
    def exact(self) -> bool:
        """The router sets the weight itself (the replica split only provides capacity)."""
        return self.policy.traffic.exact

    def plan(self, index: int) -> ReplicaPlan:
        weight = self.policy.steps[index].weight
        return self.policy.traffic.split(self.desired, weight, self.policy.extra_replicas)

    def stable_before(self, index: int) -> int:
        """Stable replicas once the step before `index` had started."""
        return self.desired if index == 0 else self.plan(index - 1).stable

    def hold(self, index: int) -> dt.timedelta:
        pause = self.policy.steps[index].pause
        return parse_duration(pause if pause is not None else self.policy.rollout.analysis.interval)


def step_analysis(state: RolloutState) -> AnalysisResult | None:
    """The last analysis, if it was taken during the current step."""
    last, started = state.last_analysis, state.step_started_at
    if last is None or started is None or last.time < started:
        return None
    return last


def next_analysis(ctx: Context, state: RolloutState) -> dt.datetime | None:
    """Analyses run every interval from the step's start, and once more as its hold ends."""
    started = state.step_started_at
    if started is None or state.step is None:
        return None
    hold_end = started + ctx.hold(state.step)
    if not ctx.policy.rollout.analysis.enabled:
        return hold_end  # a timed step: no analyses, it ends with its hold
    interval = parse_duration(ctx.policy.rollout.analysis.interval)
    last = step_analysis(state)
    if last is None:
        return min(started + interval, hold_end)
    due = last.time + interval
    return min(due, hold_end) if last.time < hold_end else due


def due(ctx: Context, state: RolloutState) -> bool:
    """An analysis is due, and none was taken at this very instant (one per instant)."""
    due = next_analysis(ctx, state)
    last = state.last_analysis
    if due is None or ctx.now < due:
        return False
    return last is None or ctx.now > last.time


def progress_deadline(ctx: Context, state: RolloutState) -> dt.datetime | None:
    """When the rollout stalls unless it makes progress first (spec.rollout.progressDeadline
    after its last progress, or after its start)."""
    recorded = (state.started_at, state.step_started_at)  # a state from before progressedAt
    since = state.progressed_at or max((t for t in recorded if t is not None), default=None)
    if since is None:
        return None
    return since + parse_duration(ctx.policy.rollout.progress_deadline)
