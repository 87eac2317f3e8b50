"""The accuracy gate: refuse to start a rollout to a version that lost too much accuracy.

The runtime records, on each compressed ModelVersion, the accuracy of the version and of
its uncompressed baseline on the same validation data. `spec.rollout.maxAccuracyDrop`
bounds the difference. A version with no recorded accuracy is not refused: there is
nothing to compare, and uncompressed models have no baseline.
"""

from __future__ import annotations

from conch.api.modelversion import ModelVersionSpec


def accuracy_drop(spec: ModelVersionSpec) -> float | None:
    """baselineAccuracy - accuracy, or None when either is not recorded."""
    compression = spec.compression
    if compression is None or compression.accuracy is None:
        return None
    if compression.baseline_accuracy is None:
        return None
    return compression.baseline_accuracy - compression.accuracy


TOLERANCE = 1e-9
"""Accuracies are floats: 0.90 - 0.85 is 0.05000000000000004, which is not over 0.05."""


def refusal(max_drop: float | None, drop: float | None, version: str) -> str | None:
    """Why a rollout to `version` may not start, or None when the gate lets it through."""
    if max_drop is None or drop is None or drop <= max_drop + TOLERANCE:
        return None
    return (
        f"{version} lost {drop:.4f} accuracy against its baseline, more than "
        f"maxAccuracyDrop {max_drop:.4f}: the rollout does not start"
    )
