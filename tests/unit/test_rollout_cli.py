"""`conch rollout`: the patches it sends and the summary it shows, from manifests."""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console

from conch.rollout_cli import render, request, summary


@pytest.mark.parametrize(
    ("action", "patch"),
    [
        ("pause", {"spec": {"rollout": {"paused": True}}}),
        ("resume", {"spec": {"rollout": {"paused": False}}}),
        ("abort", {"metadata": {"annotations": {"serving.conch.dev/abort": "1"}}}),
        ("retry", {"metadata": {"annotations": {"serving.conch.dev/retry": "1"}}}),
        ("promote", {"metadata": {"annotations": {"serving.conch.dev/promote": "1"}}}),
    ],
)
def test_each_action_is_the_patch_a_person_would_write(action: str, patch: dict[str, Any]) -> None:
    assert request(action) == patch


def service(phase: str, generation: int = 2, observed: int = 2, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "digits", "generation": generation, "annotations": {}},
        "spec": {
            "modelVersion": "digits-v2",
            "rollout": {"steps": [{"weight": 30}, {"weight": 60}]},
        },
        "status": {"phase": phase, "observedGeneration": observed, **status},
    }


def test_summary_of_a_rollout_at_its_second_step() -> None:
    s = summary(
        service(
            "Progressing",
            step=1,
            stable={"version": "digits-v1", "weight": 40, "replicas": 2, "readyReplicas": 2},
            canary={"version": "digits-v2", "weight": 60, "replicas": 2, "readyReplicas": 1},
            lastAnalysis={"time": "2026-12-07T04:00:00Z", "verdict": "Passed", "requests": 42},
        )
    )
    assert (s.phase, s.step, s.weights, s.settled) == ("Progressing", 1, (30, 60), False)
    console = Console(width=200, record=True)
    console.print(render(s))
    text = console.export_text()
    assert "digits: Progressing  step 2/2  target digits-v2" in text
    assert "digits-v1" in text and "40%" in text and "1/2" in text
    assert "last analysis: Passed" in text and "requests 42" in text


@pytest.mark.parametrize(
    ("manifest", "settled"),
    [
        (service("Stable", stable={"version": "digits-v2"}), True),
        (service("Stable", stable={"version": "digits-v1"}), False),  # not started yet
        (service("Stable", observed=1, stable={"version": "digits-v2"}), False),  # stale
        (service("RolledBack", stable={"version": "digits-v1"}), True),
        (service("Paused", step=0), True),
        (service("Promoting"), False),
    ],
)
def test_watch_stops_only_when_nothing_moves_without_a_person(
    manifest: dict[str, Any], settled: bool
) -> None:
    assert summary(manifest).settled is settled


def test_a_request_not_yet_acted_on_is_shown_and_keeps_the_watch_going() -> None:
    manifest = service("Paused", step=0)
    manifest["metadata"]["annotations"] = {"serving.conch.dev/promote": "1"}
    s = summary(manifest)
    assert s.pending == ("promote",) and not s.settled
    default = summary({"metadata": {"name": "x"}, "spec": {"modelVersion": "v"}})
    assert (default.phase, default.weights) == ("Pending", (10, 50))
