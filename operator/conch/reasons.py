"""Condition types and reasons: the machine-readable vocabulary of ModelService status.

Reasons are CamelCase, stable across releases, and each one means one thing.
"""

from typing import Final

READY: Final = "Ready"
PROGRESSING: Final = "Progressing"
DEGRADED: Final = "Degraded"

# Ready=True
AVAILABLE: Final = "Available"
# Why Ready is False (or what is in progress)
MODEL_VERSION_NOT_FOUND: Final = "ModelVersionNotFound"
INVALID_SPEC: Final = "InvalidSpec"
INSUFFICIENT_GPU: Final = "InsufficientGPU"
REPLICAS_UNAVAILABLE: Final = "ReplicasUnavailable"
DEPLOYING: Final = "Deploying"
PROGRESS_DEADLINE_EXCEEDED: Final = "ProgressDeadlineExceeded"
API_ERROR: Final = "KubernetesAPIError"
POLICY_VIOLATION: Final = "PolicyViolation"
"""The spec asks for pod settings (image, scheduling, Triton flags) the admin's policy refuses."""
# Degraded=False
AS_EXPECTED: Final = "AsExpected"
UNSCHEDULABLE: Final = "Unschedulable"
SCALED_TO_ZERO: Final = "ScaledToZero"

# Rollout: Progressing/Degraded reasons and Event reasons of the canary state machine
ROLLOUT_STARTED: Final = "RolloutStarted"
CANARY_SCALING: Final = "CanaryScaling"
CANARY_STEP: Final = "CanaryStep"
ANALYSIS_PASSED: Final = "AnalysisPassed"
ANALYSIS_FAILED: Final = "AnalysisFailed"
ANALYSIS_INCONCLUSIVE: Final = "AnalysisInconclusive"
GPU_BUDGET_EXCEEDED: Final = "GPUBudgetExceeded"
ACCURACY_GATE_FAILED: Final = "AccuracyGateFailed"
PAUSED: Final = "Paused"
RESUMED: Final = "Resumed"
PROMOTING: Final = "Promoting"
PROMOTED: Final = "Promoted"
ROLLING_BACK: Final = "RollingBack"
ROLLED_BACK: Final = "RolledBack"
ABORTED: Final = "Aborted"
SUPERSEDED: Final = "Superseded"
TARGET_REVERTED: Final = "TargetReverted"
IMMEDIATE: Final = "Immediate"
