"""The rollout decision core: pure functions from (policy, recorded state, observation,
metric samples, now) to a `Decision`. No I/O; the controller reads, calls `decide`,
applies the decision and records `decision.state` in status (`record.to_status`)."""

from conch.rollout.analysis import AnalysisVerdict, evaluate
from conch.rollout.gate import accuracy_drop
from conch.rollout.machine import analysis_due, decide
from conch.rollout.record import from_status, reconcile_with_live, to_status
from conch.rollout.state import (
    AcknowledgeRequest,
    Action,
    ConditionHint,
    Decision,
    Event,
    Observation,
    Phase,
    Policy,
    RecordHistory,
    ReplicaPlan,
    RolloutState,
    Samples,
    Traffic,
    Weights,
    needs_metrics,
)
from conch.rollout.weights import gateway_split, gateway_weights, replica_split

__all__ = [
    "AcknowledgeRequest",
    "Action",
    "AnalysisVerdict",
    "ConditionHint",
    "Decision",
    "Event",
    "Observation",
    "Phase",
    "Policy",
    "RecordHistory",
    "ReplicaPlan",
    "RolloutState",
    "Samples",
    "Traffic",
    "Weights",
    "accuracy_drop",
    "analysis_due",
    "decide",
    "evaluate",
    "from_status",
    "gateway_split",
    "gateway_weights",
    "needs_metrics",
    "reconcile_with_live",
    "replica_split",
    "to_status",
]
