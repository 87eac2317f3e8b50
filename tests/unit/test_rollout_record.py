"""The rollout's memory in status, and the small parsers it leans on."""

from __future__ import annotations

import datetime as dt

import pytest

from conch.api import ModelServiceStatus
from conch.api.modelservice import AnalysisResult, RolloutRecord
from conch.api.modelversion import ModelVersionSpec
from conch.errors import InvalidSpec
from conch.rollout import (
    Decision,
    Observation,
    RecordHistory,
    RolloutState,
    Weights,
    accuracy_drop,
    from_status,
    reconcile_with_live,
    to_status,
)
from conch.rollout.duration import parse_duration
from conch.rollout.gate import refusal
from conch.status import to_wire

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)


def wire_round_trip(status: ModelServiceStatus) -> ModelServiceStatus:
    return ModelServiceStatus.model_validate(to_wire(status))


def test_every_recorded_field_survives_the_api_server() -> None:
    state = RolloutState(
        phase="Progressing",
        stable="v1",
        canary="v2",
        step=1,
        step_started_at=NOW,
        started_at=NOW - dt.timedelta(minutes=3),
        failed_analyses=1,
        last_analysis=AnalysisResult(time=NOW, verdict="Failed", error_rate=0.2, message="x"),
        rollback_reason=None,
        inconclusive_analyses=3,
        progressed_at=NOW - dt.timedelta(minutes=1),
        stall_reason="InconclusiveLimitReached",
    )
    decision = Decision(
        state=state, replicas={"v1": 4, "v2": 2}, weights=Weights(stable=67, canary=33)
    )
    status = to_status(ModelServiceStatus(), decision, Observation(ready={"v1": 4, "v2": 2}))
    assert from_status(wire_round_trip(status)) == state
    assert status.canary is not None
    assert (status.canary.replicas, status.canary.ready_replicas, status.canary.weight) == (
        2,
        2,
        33,
    )


def test_empty_or_pending_status_reads_as_nothing_or_stable() -> None:
    assert from_status(None) == RolloutState()
    pending = ModelServiceStatus.model_validate({"phase": "Pending", "stable": {"version": "v1"}})
    assert from_status(pending) == RolloutState(phase="Stable", stable="v1")


def test_history_is_appended_and_capped() -> None:
    record = RolloutRecord(to_version="v2", result="Promoted", finished_at=NOW)
    old = [RolloutRecord(to_version=f"v{i}", result="Promoted", finished_at=NOW) for i in range(20)]
    decision = Decision(
        state=RolloutState(stable="v2"), replicas={"v2": 1}, actions=(RecordHistory(record),)
    )
    status = to_status(ModelServiceStatus(rollout_history=old), decision, Observation())
    assert len(status.rollout_history) == 20
    assert status.rollout_history[-1] == record
    assert status.canary is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("500ms", 0.5), ("5m", 300), ("1h30m", 5400), ("1.5s", 1.5), ("0s", 0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "30", "s", "30 s", "1d", "5m30", "-5s"])
def test_bad_durations_are_invalid_spec(text: str) -> None:
    with pytest.raises(InvalidSpec):
        parse_duration(text)


def mv(compression: dict[str, object] | None) -> ModelVersionSpec:
    raw: dict[str, object] = {
        "model": "digits",
        "version": "2",
        "format": "onnx",
        "source": {"uri": "s3://bucket/key", "sha256": "0" * 64},
        "signature": {
            "inputs": [{"name": "x", "dataType": "TYPE_FP32", "dims": [64]}],
            "outputs": [{"name": "y", "dataType": "TYPE_FP32", "dims": [10]}],
        },
    }
    if compression is not None:
        raw["compression"] = compression
    return ModelVersionSpec.model_validate(raw)


def test_accuracy_drop_needs_both_accuracies() -> None:
    assert accuracy_drop(mv(None)) is None
    assert accuracy_drop(mv({"baselineAccuracy": 0.97})) is None
    drop = accuracy_drop(mv({"baselineAccuracy": 0.97, "accuracy": 0.95}))
    assert drop == pytest.approx(0.02)


def test_gate_tolerates_float_noise_and_unknown_drops() -> None:
    assert refusal(0.05, 0.90 - 0.85, "v2") is None
    assert refusal(0.05, None, "v2") is None
    assert refusal(None, 0.5, "v2") is None
    assert refusal(0.01, 0.02, "v2") is not None


LIVE_CASES = [
    # (case, recorded state, live version -> ready replicas, target, acted-on state, rebuilt?)
    ("agrees", RolloutState(stable="v1"), {"v1": 2}, "v1", RolloutState(stable="v1"), False),
    ("first reconcile", RolloutState(), {}, "v1", RolloutState(), False),
    (
        "made-up stable while v1 serves",
        RolloutState(stable="ghost"),
        {"v1": 2},
        "v1",
        RolloutState(stable="v1"),
        True,
    ),
    (
        "status names versions but nothing runs",
        RolloutState(phase="Progressing", stable="v1", canary="v2", step=1),
        {},
        "v2",
        RolloutState(),
        True,
    ),
    (
        "status lost mid-rollout: the version with most ready pods is stable",
        RolloutState(),
        {"v1": 3, "v2": 1},
        "v2",
        RolloutState(stable="v1"),
        True,
    ),
    (
        "equal ready: the target wins",
        RolloutState(),
        {"v1": 1, "v2": 1},
        "v2",
        RolloutState(stable="v2"),
        True,
    ),
    (
        "a canary that runs nowhere is dropped",
        RolloutState(phase="Progressing", stable="v1", canary="ghost", step=0),
        {"v1": 2},
        "v2",
        RolloutState(stable="v1"),
        True,
    ),
    (
        "a live canary is kept",
        RolloutState(phase="Progressing", stable="v1", canary="v2", step=0),
        {"v1": 2, "v2": 0},
        "v2",
        RolloutState(phase="Progressing", stable="v1", canary="v2", step=0),
        False,
    ),
    (
        "rolled back: the canary is a record, not a running version",
        RolloutState(phase="RolledBack", stable="v1", canary="v2"),
        {"v1": 2},
        "v2",
        RolloutState(phase="RolledBack", stable="v1", canary="v2"),
        False,
    ),
    (
        "canary equal to stable",
        RolloutState(phase="Progressing", stable="v1", canary="v1", step=0),
        {"v1": 2},
        "v1",
        RolloutState(stable="v1"),
        True,
    ),
]


@pytest.mark.parametrize(
    ("recorded", "ready", "target", "expected", "rebuilt"),
    [c[1:] for c in LIVE_CASES],
    ids=[c[0] for c in LIVE_CASES],
)
def test_live_children_win_over_status(
    recorded: RolloutState,
    ready: dict[str, int],
    target: str,
    expected: RolloutState,
    rebuilt: bool,
) -> None:
    state, why = reconcile_with_live(recorded, ready, target)
    assert state == expected
    assert (why is not None) == rebuilt


@pytest.mark.parametrize(
    "forged", ["../../other/modelversions/x", "a/b", "UPPER", "x" * 254, "..", "a..b"]
)
def test_status_version_names_pass_the_spec_name_check(forged: str) -> None:
    with pytest.raises(ValueError, match="version"):
        ModelServiceStatus.model_validate({"stable": {"version": forged}})
