"""Pure status computation: what was observed -> ModelService status with conditions.

No I/O. The controller gathers a `Serving` (what the serving version looks like); `compute()` decides what it means.
Conditions keep their lastTransitionTime while their status is unchanged, so a status that
means the same thing is byte-for-byte the same and is never written twice.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from conch import reasons
from conch.api import Condition, ModelService, ModelServiceStatus
from conch.api.modelservice import Endpoints
from conch.builders import service
from conch.builders.meta import selector
from conch.errors import ConchError
from conch.rollout import Decision, record
from conch.rollout import Observation as RolloutObservation
from conch_runtime import pull_contract
from conch_runtime.errors import PullError

ACCELERATOR_MARKERS = ("nvidia.com/gpu", "nvidia.com/mig-")


def _pull_errors() -> list[type[PullError]]:
    """Every pull error class: the runtime's exit codes are its public contract."""
    found, todo = [], [PullError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return found


@dataclass(frozen=True)
class Serving:
    """What the controller saw of the version that serves one ModelService."""

    version: str
    error: ConchError | None = None
    deployment: dict[str, Any] | None = None
    pods: list[dict[str, Any]] = field(default_factory=list)
    desired_replicas: int = 1
    missing: tuple[str, ...] = ()
    """Versions still served whose ModelVersion is gone: kept running as they are."""
    all_replicas: int = 0
    """Pods of every served version (status.replicas of their Deployments)."""
    creating: tuple[str, ...] = ()
    """Children still being created ("Service NAME"): not Ready before they exist."""


@dataclass(frozen=True)
class Conditions:
    """The three conditions, as (status, reason, message)."""

    ready: tuple[str, str, str]
    progressing: tuple[str, str, str]
    degraded: tuple[str, str, str]


def unschedulable(pods: list[dict[str, Any]]) -> str | None:
    """The scheduler's message for the first pod it could not place, if any."""
    for pod in pods:
        for cond in pod.get("status", {}).get("conditions", []):
            if (
                cond.get("type") == "PodScheduled"
                and cond.get("status") == "False"
                and cond.get("reason") == "Unschedulable"
            ):
                return str(cond.get("message", "unschedulable"))
    return None


PULL_REASONS = {cls.exit_code: cls.reason for cls in _pull_errors()}
"""The init container's exit code -> the runtime's reason (DigestMismatch, HostileArchive, ...)."""


def pull_failure(pods: list[dict[str, Any]]) -> tuple[str, str] | None:
    """(reason, message) of the first pod whose artifact pull failed, if any."""
    for pod in pods:
        for container in pod.get("status", {}).get("initContainerStatuses", []):
            if container.get("name") != pull_contract.CONTAINER:
                continue
            state = container.get("state", {})
            last = container.get("lastState", {})
            terminated = state.get("terminated") or last.get("terminated")
            if terminated and terminated.get("exitCode", 0) != 0:
                code = int(terminated["exitCode"])
                reason = PULL_REASONS.get(code, "ArtifactPullFailed")
                detail = (terminated.get("message") or "").strip() or f"exit code {code}"
                return reason, f"pulling the model failed: {detail}"
    return None


def _deadline_exceeded(deployment: dict[str, Any]) -> bool:
    for cond in deployment.get("status", {}).get("conditions", []):
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return True
    return False


def judge(obs: Serving) -> Conditions:
    """Decide the conditions. Order matters: the first problem found is the one reported.

    A spec that cannot be acted on (`obs.error`) changes nothing that runs, so when the
    live Deployment still serves, Ready stays True and Degraded says what is wrong."""
    status = (obs.deployment or {}).get("status", {})
    ready = int(status.get("readyReplicas", 0))
    desired = obs.desired_replicas
    counts = f"{ready}/{desired} replicas of {obs.version} ready"
    healthy = ("False", reasons.AS_EXPECTED, "")
    if obs.missing and obs.error is None:
        gone = ", ".join(obs.missing)
        healthy = (
            "True",
            reasons.MODEL_VERSION_NOT_FOUND,
            f"ModelVersion {gone} was deleted while served: its Deployment keeps running as it is",
        )
    if obs.error is not None:
        failed = ("False", obs.error.reason, obs.error.message)
        degraded = ("True", obs.error.reason, obs.error.message)
        if obs.deployment is not None and desired > 0 and ready >= desired and not obs.creating:
            up = ("True", reasons.AVAILABLE, f"{counts}; the spec is not applied: {obs.error}")
            return Conditions(up, failed, degraded)
        return Conditions(failed, failed, degraded)
    if desired == 0:
        idle = ("False", reasons.SCALED_TO_ZERO, f"{obs.version} is scaled to zero")
        return Conditions(idle, ("False", reasons.SCALED_TO_ZERO, ""), healthy)
    if ready >= desired and obs.creating:
        creating = f"{counts}; waiting for {', '.join(obs.creating)} to be created"
        return Conditions(
            ("False", reasons.DEPLOYING, creating), ("True", reasons.DEPLOYING, creating), healthy
        )
    if ready >= desired:
        up = ("True", reasons.AVAILABLE, counts)
        return Conditions(up, ("False", reasons.AVAILABLE, counts), healthy)
    if pulled := pull_failure(obs.pods):
        failure, detail = pulled
        return Conditions(
            ("False", failure, f"{counts}: {detail}"),
            ("False", failure, detail),
            ("True", failure, detail),
        )
    if message := unschedulable(obs.pods):
        reason = (
            reasons.INSUFFICIENT_GPU
            if any(f"Insufficient {m}" in message for m in ACCELERATOR_MARKERS)
            else reasons.UNSCHEDULABLE
        )
        blocked = ("False", reason, f"{counts}: {message}")
        return Conditions(blocked, ("False", reason, message), ("True", reason, message))
    if obs.deployment is not None and _deadline_exceeded(obs.deployment):
        stuck = ("False", reasons.REPLICAS_UNAVAILABLE, counts)
        late = ("True", reasons.PROGRESS_DEADLINE_EXCEEDED, counts)
        return Conditions(stuck, ("False", reasons.PROGRESS_DEADLINE_EXCEEDED, counts), late)
    waiting = ("False", reasons.REPLICAS_UNAVAILABLE, counts)
    return Conditions(waiting, ("True", reasons.DEPLOYING, counts), healthy)


def _condition(
    type_: str,
    value: tuple[str, str, str],
    previous: list[Condition],
    generation: int | None,
    now: dt.datetime,
) -> Condition:
    status, reason, message = value
    old = next((c for c in previous if c.type == type_), None)
    since = old.last_transition_time if old and old.status == status else now
    return Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=generation,
    )


def compute(
    svc: ModelService,
    obs: Serving,
    now: dt.datetime,
    decision: Decision | None = None,
    seen: RolloutObservation | None = None,
) -> ModelServiceStatus:
    """The status to write for `svc`. Ready judges the version serving users; while a
    rollout is under way its hints speak for Progressing and Degraded, and `decision` (with
    what the rollout saw, `seen`) fills the rollout fields. Without a decision (the spec
    could not be acted on) the rollout fields keep what was recorded."""
    previous = svc.status or ModelServiceStatus()
    verdict = judge(obs)
    values = {
        reasons.READY: verdict.ready,
        reasons.PROGRESSING: verdict.progressing,
        reasons.DEGRADED: verdict.degraded,
    }
    for hint in decision.conditions if decision else ():
        values[hint.type] = (hint.status, hint.reason, hint.message)
    generation = svc.metadata.generation
    conditions = [
        _condition(type_, value, previous.conditions, generation, now)
        for type_, value in values.items()
    ]
    is_ready = verdict.ready[0] == "True"
    base = previous
    if decision is not None and seen is not None:
        base = record.to_status(previous, decision, seen)
    phase = base.phase or "Stable"
    if phase in ("Stable", "Pending"):
        phase = "Stable" if is_ready else "Pending"
    return base.model_copy(
        update={
            "conditions": conditions,
            "observed_generation": generation,
            "phase": phase,
            "endpoints": Endpoints(**service.endpoints(svc)),
            # the scale subresource: what the HPA counts and whose pods it averages over
            "replicas": obs.all_replicas,
            "selector": ",".join(f"{k}={v}" for k, v in selector(svc).items()),
        }
    )


def to_wire(status: ModelServiceStatus) -> dict[str, Any]:
    """The status as the API stores it (camelCase, RFC 3339 times, no nulls)."""
    return status.model_dump(mode="json", exclude_none=True)
