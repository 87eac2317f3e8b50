"""The Argo CD health checks in docs/argocd/, run in a real Lua 5.1 (the language version
of Argo CD's gopher-lua) on sample objects shaped as the operator writes them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lupa import lua51

from conch import reasons

DOCS = Path(__file__).resolve().parents[2] / "docs" / "argocd"


def health(script: str, obj: dict[str, Any]) -> tuple[str, str]:
    lua = lua51.LuaRuntime()
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute((DOCS / script).read_text())
    return str(result["status"]), str(result["message"])


def cond(type_: str, status: str, reason: str, message: str = "m") -> dict[str, str]:
    return {"type": type_, "status": status, "reason": reason, "message": message}


def service(status: dict[str, Any] | None, generation: int = 2) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "serving.conch.dev/v1alpha1",
        "kind": "ModelService",
        "metadata": {"name": "digits", "generation": generation},
        "spec": {"modelVersion": "v2"},
    }
    if status is not None:
        obj["status"] = {"observedGeneration": 2, **status}
    return obj


READY = cond("Ready", "True", reasons.AVAILABLE, "4/4 replicas of v2 ready")


@pytest.mark.parametrize(
    ("obj", "expected", "says"),
    [
        (service(None), "Progressing", "Waiting for the Conch operator"),
        (service({"observedGeneration": 1, "conditions": [READY]}), "Progressing", "generation"),
        (service({"phase": "Stable", "conditions": [READY]}), "Healthy", "4/4 replicas"),
        (
            service(
                {
                    "phase": "Progressing",
                    "conditions": [
                        READY,
                        cond("Progressing", "True", reasons.CANARY_STEP, "step 1/2 (10%)"),
                    ],
                }
            ),
            "Progressing",
            "step 1/2",
        ),
        (
            service(
                {
                    "phase": "Paused",
                    "conditions": [
                        READY,
                        cond("Progressing", "Unknown", reasons.PAUSED, "paused at step 1/2"),
                    ],
                }
            ),
            "Suspended",
            "paused at step 1/2",
        ),
        (
            service(
                {
                    "phase": "Paused",
                    "stallReason": reasons.INCONCLUSIVE_LIMIT_REACHED,
                    "conditions": [
                        READY,
                        cond("Progressing", "False", reasons.INCONCLUSIVE_LIMIT_REACHED),
                        cond("Degraded", "True", reasons.INCONCLUSIVE_LIMIT_REACHED, "stalled"),
                    ],
                }
            ),
            "Degraded",
            "InconclusiveLimitReached: stalled",
        ),
        (
            service(
                {
                    "phase": "RolledBack",
                    "conditions": [
                        READY,
                        cond("Degraded", "True", reasons.ANALYSIS_FAILED, "rolled back"),
                    ],
                }
            ),
            "Degraded",
            "AnalysisFailed",
        ),
        (
            service({"conditions": [cond("Ready", "False", reasons.POLICY_VIOLATION, "image")]}),
            "Degraded",
            "PolicyViolation: image",
        ),
        (
            service({"conditions": [cond("Ready", "False", reasons.REPLICAS_UNAVAILABLE, "0/4")]}),
            "Progressing",
            "ReplicasUnavailable: 0/4",
        ),
        (
            service(
                {
                    "phase": "Stable",
                    "conditions": [
                        READY,
                        cond("Degraded", "False", reasons.AS_EXPECTED),
                        cond("Progressing", "False", reasons.NO_METRICS_SOURCE),
                    ],
                }
            ),
            "Healthy",
            "4/4",
        ),
    ],
)
def test_modelservice_health(obj: dict[str, Any], expected: str, says: str) -> None:
    status, message = health("modelservice-health.lua", obj)
    assert status == expected
    assert says in message


@pytest.mark.parametrize(
    ("status", "expected", "says"),
    [
        (None, "Progressing", "Waiting"),
        ({"observedGeneration": 1, "usedBy": ["digits", "ocr"]}, "Healthy", "digits, ocr"),
        ({"observedGeneration": 1}, "Healthy", "Not served"),
        (
            {"observedGeneration": 1, "conditions": [cond("Valid", "False", "InvalidSpec", "x")]},
            "Degraded",
            "InvalidSpec: x",
        ),
    ],
)
def test_modelversion_health(status: dict[str, Any] | None, expected: str, says: str) -> None:
    obj: dict[str, Any] = {"kind": "ModelVersion", "metadata": {"name": "v1", "generation": 1}}
    if status is not None:
        obj["status"] = status
    got, message = health("modelversion-health.lua", obj)
    assert got == expected
    assert says in message
