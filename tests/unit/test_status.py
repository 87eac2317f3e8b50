"""The pure status decision: observation -> conditions, as a table."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from conch import kube, reasons, rollout, routers, status
from conch.api import ModelService
from conch.errors import InvalidSpec, ModelVersionNotFound, NameConflict

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(minutes=5)


def svc(status_: dict[str, Any] | None = None) -> ModelService:
    raw: dict[str, Any] = {
        "metadata": {"name": "digits", "namespace": "ml", "generation": 3},
        "spec": {"modelVersion": "digits-v1"},
    }
    if status_:
        raw["status"] = status_
    return ModelService.model_validate(raw)


def deployment(ready: int, replicas: int = 2, deadline: bool = False) -> dict[str, Any]:
    conditions = (
        [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]
        if deadline
        else []
    )
    return {"status": {"replicas": replicas, "readyReplicas": ready, "conditions": conditions}}


def pending_pod(message: str) -> dict[str, Any]:
    return {
        "status": {
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": message,
                }
            ]
        }
    }


GPU_SHORT = "0/6 nodes are available: 2 Insufficient nvidia.com/gpu, 4 node(s) didn't match"
MIG_SHORT = "0/6 nodes are available: 1 Insufficient nvidia.com/mig-3g.20gb"
CPU_SHORT = "0/6 nodes are available: 6 Insufficient cpu"

CASES = [
    # (case, observation, Ready, Progressing, Degraded)
    (
        "available",
        status.Serving("v1", deployment=deployment(2), desired_replicas=2),
        ("True", reasons.AVAILABLE),
        ("False", reasons.AVAILABLE),
        ("False", reasons.AS_EXPECTED),
    ),
    (
        "more ready than desired",
        status.Serving("v1", deployment=deployment(3), desired_replicas=2),
        ("True", reasons.AVAILABLE),
        ("False", reasons.AVAILABLE),
        ("False", reasons.AS_EXPECTED),
    ),
    (
        "starting",
        status.Serving("v1", deployment=deployment(1), desired_replicas=2),
        ("False", reasons.REPLICAS_UNAVAILABLE),
        ("True", reasons.DEPLOYING),
        ("False", reasons.AS_EXPECTED),
    ),
    (
        "no deployment yet",
        status.Serving("v1", desired_replicas=1),
        ("False", reasons.REPLICAS_UNAVAILABLE),
        ("True", reasons.DEPLOYING),
        ("False", reasons.AS_EXPECTED),
    ),
    (
        "gpus short",
        status.Serving(
            "v1", deployment=deployment(0), pods=[pending_pod(GPU_SHORT)], desired_replicas=2
        ),
        ("False", reasons.INSUFFICIENT_GPU),
        ("False", reasons.INSUFFICIENT_GPU),
        ("True", reasons.INSUFFICIENT_GPU),
    ),
    (
        "mig slices short",
        status.Serving(
            "v1", deployment=deployment(0), pods=[pending_pod(MIG_SHORT)], desired_replicas=1
        ),
        ("False", reasons.INSUFFICIENT_GPU),
        ("False", reasons.INSUFFICIENT_GPU),
        ("True", reasons.INSUFFICIENT_GPU),
    ),
    (
        "cpu short",
        status.Serving(
            "v1", deployment=deployment(0), pods=[pending_pod(CPU_SHORT)], desired_replicas=1
        ),
        ("False", reasons.UNSCHEDULABLE),
        ("False", reasons.UNSCHEDULABLE),
        ("True", reasons.UNSCHEDULABLE),
    ),
    (
        "deadline exceeded",
        status.Serving("v1", deployment=deployment(0, deadline=True), desired_replicas=1),
        ("False", reasons.REPLICAS_UNAVAILABLE),
        ("False", reasons.PROGRESS_DEADLINE_EXCEEDED),
        ("True", reasons.PROGRESS_DEADLINE_EXCEEDED),
    ),
    (
        "scaled to zero",
        status.Serving("v1", deployment=deployment(0, 0), desired_replicas=0),
        ("False", reasons.SCALED_TO_ZERO),
        ("False", reasons.SCALED_TO_ZERO),
        ("False", reasons.AS_EXPECTED),
    ),
    (
        "version missing",
        status.Serving("v1", error=ModelVersionNotFound("ModelVersion 'v1' not found")),
        ("False", reasons.MODEL_VERSION_NOT_FOUND),
        ("False", reasons.MODEL_VERSION_NOT_FOUND),
        ("True", reasons.MODEL_VERSION_NOT_FOUND),
    ),
    (
        "version deleted while its deployment serves",
        status.Serving(
            "v1",
            error=ModelVersionNotFound("ModelVersion 'v1' not found"),
            deployment=deployment(2),
            desired_replicas=2,
        ),
        ("True", reasons.AVAILABLE),
        ("False", reasons.MODEL_VERSION_NOT_FOUND),
        ("True", reasons.MODEL_VERSION_NOT_FOUND),
    ),
    (
        "name held by someone else, nothing served yet",
        status.Serving("v1", error=NameConflict("Service digits belongs to someone else")),
        ("False", reasons.NAME_CONFLICT),
        ("False", reasons.NAME_CONFLICT),
        ("True", reasons.NAME_CONFLICT),
    ),
    (
        "refused spec while the deployment is short of replicas",
        status.Serving("v1", error=NameConflict("x"), deployment=deployment(1), desired_replicas=2),
        ("False", reasons.NAME_CONFLICT),
        ("False", reasons.NAME_CONFLICT),
        ("True", reasons.NAME_CONFLICT),
    ),
    (
        "stable version deleted mid-rollout: kept running",
        status.Serving("v1", deployment=deployment(2), desired_replicas=2, missing=("v0",)),
        ("True", reasons.AVAILABLE),
        ("False", reasons.AVAILABLE),
        ("True", reasons.MODEL_VERSION_NOT_FOUND),
    ),
    (
        "replicas ready, its Service still being created",
        status.Serving("v1", deployment=deployment(2), desired_replicas=2, creating=("Service s",)),
        ("False", reasons.DEPLOYING),
        ("True", reasons.DEPLOYING),
        ("False", reasons.AS_EXPECTED),
    ),
    (
        "refused by the API",
        status.Serving("v1", error=InvalidSpec("spec.template...: Invalid value")),
        ("False", reasons.INVALID_SPEC),
        ("False", reasons.INVALID_SPEC),
        ("True", reasons.INVALID_SPEC),
    ),
]


@pytest.mark.parametrize(
    ("obs", "ready", "progressing", "degraded"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_conditions(
    obs: status.Serving,
    ready: tuple[str, str],
    progressing: tuple[str, str],
    degraded: tuple[str, str],
) -> None:
    new = status.compute(svc(), obs, NOW)
    got = {c.type: (c.status, c.reason) for c in new.conditions}
    assert got == {"Ready": ready, "Progressing": progressing, "Degraded": degraded}
    assert all(c.observed_generation == 3 for c in new.conditions)
    assert new.observed_generation == 3
    assert new.phase == ("Stable" if ready[0] == "True" else "Pending")


def test_scheduler_message_is_kept() -> None:
    obs = status.Serving(
        "v1", deployment=deployment(0), pods=[pending_pod(GPU_SHORT)], desired_replicas=2
    )
    ready = status.compute(svc(), obs, NOW).conditions[0]
    assert GPU_SHORT in ready.message and "0/2 replicas of v1 ready" in ready.message


def test_transition_time_moves_only_when_status_changes() -> None:
    first = status.compute(
        svc(), status.Serving("v1", deployment=deployment(1), desired_replicas=2), NOW
    )
    same = status.compute(
        svc(status.to_wire(first)),
        status.Serving("v1", deployment=deployment(1), desired_replicas=2),
        LATER,
    )
    assert status.to_wire(same) == status.to_wire(first)  # nothing to write
    flipped = status.compute(
        svc(status.to_wire(first)),
        status.Serving("v1", deployment=deployment(2), desired_replicas=2),
        LATER,
    )
    times = {c.type: c.last_transition_time for c in flipped.conditions}
    assert times["Ready"] == LATER and times["Degraded"] == NOW


def test_status_records_the_rollout_decision_and_endpoints() -> None:
    policy = rollout.Policy.from_spec(svc().spec, 2, routers.create("replicas"))
    seen = rollout.Observation(ready={"digits-v1": 2})
    decision = rollout.decide(policy, rollout.RolloutState(), seen, None, NOW)
    obs = status.Serving("digits-v1", deployment=deployment(2), desired_replicas=2)
    wire = status.to_wire(status.compute(svc(), obs, NOW, decision, seen))
    assert wire["stable"] == {
        "version": "digits-v1",
        "replicas": 2,
        "readyReplicas": 2,
        "weight": 100,
    }
    assert wire["phase"] == "Stable"
    assert wire["endpoints"]["http"] == "http://digits.ml.svc:8000"
    assert wire["conditions"][0]["lastTransitionTime"] == "2026-11-23T12:00:00Z"


def test_rollout_hints_speak_for_progressing_and_degraded() -> None:
    hint = rollout.ConditionHint("Degraded", "True", "AnalysisFailed", "error rate 0.3 > 0.01")
    decision = rollout.Decision(
        state=rollout.RolloutState(stable="v1"), replicas={"v1": 2}, conditions=(hint,)
    )
    obs = status.Serving("v1", deployment=deployment(2), desired_replicas=2)
    new = status.compute(svc(), obs, NOW, decision, rollout.Observation(ready={"v1": 2}))
    got = {c.type: (c.status, c.reason) for c in new.conditions}
    assert got["Degraded"] == ("True", "AnalysisFailed")
    assert got["Ready"] == ("True", reasons.AVAILABLE)


def failed_pull(code: int, message: str, crash_looping: bool = True) -> dict[str, Any]:
    terminated = {"exitCode": code, "message": message, "reason": "Error"}
    state: dict[str, Any] = (
        {"waiting": {"reason": "CrashLoopBackOff"}} if crash_looping else {"terminated": terminated}
    )
    return {
        "status": {
            "initContainerStatuses": [
                {"name": "pull-model", "state": state, "lastState": {"terminated": terminated}}
            ]
        }
    }


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (9, "DigestMismatch"),
        (11, "HostileArchive"),
        (5, "ArtifactNotFound"),
        (6, "AccessDenied"),
        (10, "ArtifactTooLarge"),
        (99, "ArtifactPullFailed"),
    ],
)
def test_artifact_pull_failures_are_named(code: int, reason: str) -> None:
    line = f"conch pull: {reason}: https://models.example.com/m.tar: sha256 mismatch"
    obs = status.Serving(
        "v1", deployment=deployment(0, 1), pods=[failed_pull(code, line)], desired_replicas=1
    )
    conditions = {c.type: c for c in status.compute(svc(), obs, NOW).conditions}
    assert (conditions["Ready"].status, conditions["Ready"].reason) == ("False", reason)
    assert conditions["Degraded"].status == "True"
    assert line in conditions["Ready"].message


def test_pull_reasons_follow_the_runtime_exit_codes() -> None:
    assert status.PULL_REASONS[9] == "DigestMismatch"
    assert status.PULL_REASONS[11] == "HostileArchive"
    assert 2 not in status.PULL_REASONS  # argparse's usage error is not a pull outcome


@pytest.mark.parametrize(
    ("status_code", "message", "content", "retry"),
    [
        (422, "spec.template.spec.affinity: Invalid value", True, False),
        (400, "bad request", True, False),
        (
            500,
            "failed to create typed patch object (...): .spec.affinity.foo: field not declared in schema",
            True,
            False,
        ),
        (500, "etcdserver: request timed out", False, True),
        (409, "the object has been modified", False, True),
        (429, "too many requests", False, True),
        (403, "forbidden: namespace is being terminated", False, False),
        (404, 'namespaces "gone" not found', False, False),
        (0, "connection refused", False, True),
    ],
)
def test_api_answers_are_sorted_into_refused_and_retryable(
    status_code: int, message: str, content: bool, retry: bool
) -> None:
    """A refusal that asking again cannot change is reported, never retried for ever."""
    assert kube.refused_for_content(status_code, message) is content
    if not content:
        assert kube.retryable(status_code) is retry
