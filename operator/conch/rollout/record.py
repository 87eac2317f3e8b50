"""The rollout's memory in status: `ModelServiceStatus` <-> `RolloutState`. Pure.

Everything `decide` remembers lives in these status fields, so an operator that restarts
reads back exactly the state it wrote:

    status.phase            RolloutState.phase (Pending or unset reads as Stable)
    status.stable.version   RolloutState.stable
    status.canary.version   RolloutState.canary
    status.step             RolloutState.step
    status.stepStartedAt    RolloutState.step_started_at
    status.rolloutStartedAt RolloutState.started_at
    status.failedAnalyses   RolloutState.failed_analyses
    status.lastAnalysis     RolloutState.last_analysis
    status.rollbackReason   RolloutState.rollback_reason
    status.inconclusiveAnalyses RolloutState.inconclusive_analyses
    status.progressedAt     RolloutState.progressed_at
    status.stallReason      RolloutState.stall_reason

Conditions are not written here: the controller merges `Decision.conditions` into its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Final

from conch.api.modelservice import ModelServiceStatus, RolloutRecord, VersionStatus
from conch.rollout.state import Decision, Observation, Phase, RecordHistory, RolloutState

HISTORY_LIMIT: Final = 20
"""status.rolloutHistory keeps the newest records (the CRD caps the list at 20)."""

_PHASES: Final[dict[str, Phase]] = {
    "Stable": "Stable",
    "Progressing": "Progressing",
    "Paused": "Paused",
    "Promoting": "Promoting",
    "RollingBack": "RollingBack",
    "RolledBack": "RolledBack",
}


def from_status(status: ModelServiceStatus | None) -> RolloutState:
    """The recorded rollout state; an empty status is a service that serves nothing yet."""
    if status is None:
        return RolloutState()
    return RolloutState(
        phase=_PHASES.get(status.phase or "", "Stable"),
        stable=status.stable.version if status.stable else None,
        canary=status.canary.version if status.canary else None,
        step=status.step,
        step_started_at=status.step_started_at,
        started_at=status.rollout_started_at,
        failed_analyses=status.failed_analyses,
        last_analysis=status.last_analysis,
        rollback_reason=status.rollback_reason,
        inconclusive_analyses=status.inconclusive_analyses,
        progressed_at=status.progressed_at,
        stall_reason=status.stall_reason,
    )


def reconcile_with_live(
    state: RolloutState, ready: Mapping[str, int], target: str
) -> tuple[RolloutState, str | None]:
    """`state` checked against the versions whose Deployments this service controls
    (`ready`: version -> ready replicas). Status is our output, never an order: a stable
    or canary version that runs nowhere while others do is a contradiction (a forged or
    stale status), and the live children win. Returns the state to act on and, when it was
    rebuilt, why.

    - nothing runs: whatever status says, start afresh (the target is deployed);
    - the recorded stable runs nowhere: the live version with the most ready replicas
      (the target first among equals) becomes stable;
    - the recorded canary runs nowhere (outside RolledBack, where it names the version
      that was rolled back): it is dropped, so a rollout starts again from the stable
      version instead of trusting what status claims.
    """
    recorded = [v for v in (state.stable, state.canary) if v is not None]
    if not ready:
        if recorded:
            return RolloutState(), f"status names {', '.join(recorded)} but none of them runs"
        return state, None
    notes = []
    if state.stable not in ready:
        best = max(sorted(ready), key=lambda v: (ready[v], v == target))
        notes.append(f"status names stable {state.stable} but {best} is what runs")
        state = dataclasses.replace(state, stable=best)
    orphan = state.canary not in ready and state.phase != "RolledBack"
    if state.canary is not None and (orphan or state.canary == state.stable):
        notes.append(f"status names canary {state.canary}, which does not run")
        state = RolloutState(stable=state.stable)
    return state, ("; ".join(notes) or None)


def history(previous: list[RolloutRecord], decision: Decision) -> list[RolloutRecord]:
    """`previous` with the decision's new records, newest last, at most HISTORY_LIMIT."""
    added = [a.record for a in decision.actions if isinstance(a, RecordHistory)]
    return (previous + added)[-HISTORY_LIMIT:]


def _version(
    decision: Decision, observation: Observation, version: str | None, weight: int
) -> VersionStatus | None:
    if version is None:
        return None
    return VersionStatus(
        version=version,
        replicas=decision.replicas.get(version, 0),
        ready_replicas=observation.ready_of(version),
        weight=weight,
    )


def to_status(
    previous: ModelServiceStatus, decision: Decision, observation: Observation
) -> ModelServiceStatus:
    """`previous` with the decision recorded: phase, versions (target replicas, ready
    replicas and weight), step, times, counters and history. Conditions are untouched."""
    state = decision.state
    return previous.model_copy(
        update={
            "phase": state.phase,
            "stable": _version(decision, observation, state.stable, decision.weights.stable),
            "canary": _version(decision, observation, state.canary, decision.weights.canary),
            "step": state.step,
            "step_started_at": state.step_started_at,
            "rollout_started_at": state.started_at,
            "rollback_reason": state.rollback_reason,
            "failed_analyses": state.failed_analyses,
            "inconclusive_analyses": state.inconclusive_analyses,
            "progressed_at": state.progressed_at,
            "stall_reason": state.stall_reason,
            "last_analysis": state.last_analysis,
            "rollout_history": history(previous.rollout_history, decision),
        }
    )
