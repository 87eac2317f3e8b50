"""`conch operator selftest`'s pure parts: the probe objects and when they count as reconciled."""

from __future__ import annotations

from typing import Any

import pytest

from conch.api.modelservice import ModelService
from conch.api.modelversion import ModelVersion
from conch.selftest import manifests, reconciled


def test_probe_objects_are_valid_and_take_nothing() -> None:
    version, service = manifests("conch-selftest-abc123")
    ModelVersion.model_validate(version)
    svc = ModelService.model_validate(service)
    assert svc.spec.replicas == 0 and svc.spec.resources.gpus == 0
    assert svc.spec.model_version == version["metadata"]["name"]


def service(generation: int, status: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "metadata": {"generation": generation},
        "spec": {"modelVersion": "v1"},
        **({"status": status} if status is not None else {}),
    }


@pytest.mark.parametrize(
    ("obj", "done", "says"),
    [
        (service(1, None), False, "no status yet"),
        (service(1, {"conditions": []}), False, "no status yet"),
        (
            service(2, {"observedGeneration": 1, "stable": {"version": "v1"}}),
            False,
            "observedGeneration 1",
        ),
        (
            service(
                1,
                {
                    "observedGeneration": 1,
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "False",
                            "reason": "InvalidSpec",
                            "message": "m",
                        }
                    ],
                },
            ),
            False,
            "Ready=False (InvalidSpec: m)",
        ),
        (
            service(1, {"observedGeneration": 1, "stable": {"version": "v1"}, "phase": "Stable"}),
            True,
            "reconciled: stable v1, phase Stable",
        ),
    ],
)
def test_reconciled(obj: dict[str, Any], done: bool, says: str) -> None:
    verdict = reconciled(obj)
    assert verdict.done is done
    assert says in verdict.detail
