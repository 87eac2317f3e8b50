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
NAME_CONFLICT: Final = "NameConflict"
"""A child's name is held by an object this ModelService does not control: nothing touched."""
STATUS_REBUILT: Final = "StatusRebuilt"
"""Status named versions that run nowhere; the live children were taken instead."""
CREDENTIALS_NOT_ALLOWED: Final = "CredentialsNotAllowed"
"""The artifact credentials Secret has not opted in, or the URI's host is not allowed."""
SOURCE_NOT_ALLOWED: Final = "SourceNotAllowed"
"""The artifact URI is refused before any pod runs (file:// outside the sandbox, malformed)."""
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
NO_METRICS_SOURCE: Final = "NoMetricsSource"
"""A canary needs analysis but the operator has no metrics source: the rollout does not start."""
INCONCLUSIVE_LIMIT_REACHED: Final = "InconclusiveLimitReached"
"""spec.rollout.analysis.inconclusiveLimit inconclusive analyses in a row: the rollout stalled."""
ROLLOUT_DEADLINE_EXCEEDED: Final = "RolloutDeadlineExceeded"
"""No progress within spec.rollout.progressDeadline: the rollout stalled."""
