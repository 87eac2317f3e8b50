"""The values the rollout state machine reads and returns. Data only: no I/O, no behaviour
beyond small derived properties.

    decide(Policy, RolloutState, Observation, Samples | None, now) -> Decision

- `Policy`: what the spec asks (target version, `spec.rollout`, replicas, GPUs per replica).
- `RolloutState`: what status records between reconciles. It is the machine's only memory,
  so an operator restart that reads it back from status decides exactly as before.
- `Observation`: what the controller saw this time (ready replicas, GPU shortage, the
  target's accuracy drop, abort/retry requests).
- `Samples`: the canary's metrics over the last analysis interval; any may be missing.
- `Decision`: the next state to record, the desired replicas and traffic weights, and the
  actions, events and condition hints that explain the change.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from conch.api.modelservice import (
    AnalysisResult,
    CanaryStep,
    ModelServiceSpec,
    Rollout,
    RolloutRecord,
)

Phase = Literal["Stable", "Progressing", "Paused", "Promoting", "RollingBack", "RolledBack"]
"""The rollout phases; a subset of `ModelServiceStatus.phase` (which adds Pending)."""

Verdict = Literal["Passed", "Failed", "Inconclusive"]

DEFAULT_STEP_WEIGHTS: tuple[int, ...] = (10, 50)
"""What `spec.rollout.steps` means when unset: 10%, 50%, then promotion."""


@dataclass(frozen=True)
class Policy:
    """What the spec asks of a rollout. Everything here comes from the ModelService spec
    (and the autoscaler's current replica count), never from observed state."""

    target: str
    """spec.modelVersion: the version the service should end up serving."""
    rollout: Rollout
    desired_replicas: int
    """Replicas the service should run (spec.replicas, or the HPA's current count)."""
    traffic: Traffic
    """How the chosen router splits traffic (`conch.routers`): its replica math and whether
    the weight it sets is exact."""
    gpus_per_replica: int = 1
    """spec.resources.gpus; 0 serves on CPU, where the GPU budget never binds."""
    metrics_available: bool = True
    """The operator has a metrics source. Without one a rollout that `needs_metrics`
    does not start (NoMetricsSource) instead of waiting on analyses that cannot pass."""

    @classmethod
    def from_spec(
        cls,
        spec: ModelServiceSpec,
        desired_replicas: int,
        traffic: Traffic,
        metrics_available: bool = True,
    ) -> Policy:
        return cls(
            target=spec.model_version,
            rollout=spec.rollout,
            desired_replicas=desired_replicas,
            traffic=traffic,
            gpus_per_replica=spec.resources.gpus,
            metrics_available=metrics_available,
        )

    @property
    def steps(self) -> tuple[CanaryStep, ...]:
        if self.rollout.steps:
            return tuple(self.rollout.steps)
        return tuple(CanaryStep(weight=weight) for weight in DEFAULT_STEP_WEIGHTS)

    @property
    def extra_replicas(self) -> int | None:
        """Replicas the GPU budget allows beyond `desired_replicas`; None is unlimited.

        maxExtraGPUs=3 with 2 GPUs per replica allows 1 extra replica (a half replica is
        no replica). Unset maxExtraGPUs, or CPU serving, is unlimited.
        """
        budget = self.rollout.max_extra_gpus
        if budget is None or self.gpus_per_replica == 0:
            return None
        return budget // self.gpus_per_replica


def needs_metrics(policy: Policy) -> bool:
    """Whether a rollout under `policy` reads metrics: a canary judged by analysis.
    Immediate, and a canary with `analysis.enabled: false` (timed steps), do not."""
    return policy.rollout.strategy == "Canary" and policy.rollout.analysis.enabled


@dataclass(frozen=True)
class RolloutState:
    """What status records for the rollout; the machine's whole memory.

    `conch.rollout.record` maps it to and from `ModelServiceStatus` (stable.version,
    canary.version, phase, step, stepStartedAt, rolloutStartedAt, failedAnalyses,
    lastAnalysis, rollbackReason).
    """

    phase: Phase = "Stable"
    stable: str | None = None
    """The version serving users; None only before the first reconcile."""
    canary: str | None = None
    """The version being rolled out (or, when RolledBack, the one that was rolled back)."""
    step: int | None = None
    """Index into the policy's steps while Progressing/Paused; the last one while Promoting."""
    step_started_at: dt.datetime | None = None
    """When the step's weight took effect (the canary was ready); None while it scales up."""
    started_at: dt.datetime | None = None
    """When the rollout in progress began."""
    failed_analyses: int = 0
    """Failed analyses in a row at the current step."""
    last_analysis: AnalysisResult | None = None
    rollback_reason: str | None = None
    """Why RollingBack/RolledBack: a reason from conch.reasons (AnalysisFailed, Aborted, ...)."""
    inconclusive_analyses: int = 0
    """Inconclusive analyses in a row at the current step."""
    progressed_at: dt.datetime | None = None
    """When the rollout last made progress; None reads as `started_at`."""
    stall_reason: str | None = None
    """Set while Paused by a stall (not by spec.rollout.paused): only a retry resumes."""


@dataclass(frozen=True)
class Observation:
    """What the controller saw this reconcile, already reduced to what the machine needs."""

    ready: Mapping[str, int] = field(default_factory=dict)
    """Ready replicas per ModelVersion name; a version that is absent has none."""
    canary_unschedulable: str | None = None
    """The scheduler's message when canary pods cannot be placed for lack of GPUs."""
    accuracy_drop: float | None = None
    """baselineAccuracy - accuracy recorded on the target ModelVersion; None if not recorded."""
    abort_requested: bool = False
    """The user asked to abort the rollout in progress (a one-shot request)."""
    retry_requested: bool = False
    """The user asked to retry a rolled-back rollout (a one-shot request)."""
    promote_requested: bool = False
    """The user asked to skip the remaining canary steps (a one-shot request)."""

    def ready_of(self, version: str | None) -> int:
        return 0 if version is None else max(0, self.ready.get(version, 0))


@dataclass(frozen=True)
class Samples:
    """The canary's metrics over the last analysis interval. None is "no data", which the
    analysis treats as Inconclusive, never as a pass and never as a failure."""

    requests: float | None = None
    error_rate: float | None = None
    """Failed inferences / all inferences, 0..1."""
    p99_latency_ms: float | None = None
    queue_time_ms: float | None = None
    """Mean queue time per request."""
    custom: Mapping[str, float | None] = field(default_factory=dict)
    """Scalar result of each custom check's query, by check name."""


@dataclass(frozen=True)
class Weights:
    """Traffic split in percent; always sums to 100."""

    stable: int
    canary: int

    def __post_init__(self) -> None:
        if not (0 <= self.canary <= 100 and self.stable + self.canary == 100):
            raise ValueError(f"weights must be 0..100 and sum to 100, got {self}")

    @classmethod
    def to_canary(cls, canary: int) -> Weights:
        return cls(stable=100 - canary, canary=canary)


ALL_STABLE = Weights(stable=100, canary=0)


@dataclass(frozen=True)
class ReplicaPlan:
    """Replicas of each version for one canary weight, and the weight they achieve."""

    stable: int
    canary: int
    requested: int
    """The step's weight in percent."""
    achieved: int
    """The canary's share of traffic once both versions are ready at these counts."""


class Traffic(Protocol):
    """What the rollout needs to know of a router; each router in `conch.routers` is one."""

    @property
    def exact(self) -> bool:
        """The weight it sets is the weight users get (replicas only provide capacity)."""
        ...

    def split(self, desired: int, weight: int, extra: int | None) -> ReplicaPlan:
        """Replicas of each version for a canary `weight`, within `extra` spare replicas."""
        ...

    def achieved(
        self, weights: Weights, ready: Mapping[str, int], stable: str | None, canary: str | None
    ) -> Weights:
        """The split users actually get from `weights` asked of a route, given the ready
        replicas of each version."""
        ...


# Actions: what a decision asks beyond its desired state (`Decision.replicas` and
# `Decision.weights`, which say everything about scaling and traffic): history records and
# acknowledged requests.


@dataclass(frozen=True)
class RecordHistory:
    """Append to status.rolloutHistory (keep the newest 20)."""

    record: RolloutRecord


@dataclass(frozen=True)
class AcknowledgeRequest:
    """The abort/retry/promote request was read: remove its annotation so it acts only once."""

    request: Literal["abort", "retry", "promote"]


Action = RecordHistory | AcknowledgeRequest


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the ModelService."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class ConditionHint:
    """What the rollout says about one condition; the controller owns the condition list."""

    type: Literal["Progressing", "Degraded"]
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    """The result of one `decide` call.

    - `state`: record it in status (see `conch.rollout.record.to_status`).
    - `replicas`: target replicas per ModelVersion name. A version that is not listed is
      not served: its Deployment can be deleted.
    - `weights`: the stable/canary traffic split. For the gatewayAPI router it is what the
      HTTPRoute must say; for the replicas router it is what the ready replicas achieve now.
    - `actions`, `events`: what changed in this decision (empty when nothing did), so a
      second call with the recorded state does not repeat them.
    - `conditions`: Progressing/Degraded hints while a rollout is under way, recomputed on
      every call; empty when the rollout has nothing to say (the service is Stable).
    - `next_check`: when the next analysis is due, for the work queue's requeue.
    """

    state: RolloutState
    replicas: Mapping[str, int]
    weights: Weights = ALL_STABLE
    actions: tuple[Action, ...] = ()
    events: tuple[Event, ...] = ()
    conditions: tuple[ConditionHint, ...] = ()
    next_check: dt.datetime | None = None

    @property
    def phase(self) -> Phase:
        return self.state.phase

    @property
    def step(self) -> int | None:
        return self.state.step
