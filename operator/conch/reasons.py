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
# Usage terms and grants (conch.usage; docs/catalog.md)
USAGE_NOT_GRANTED: Final = "UsageNotGranted"
"""Another namespace's ModelVersion without both its allowedNamespaces and a ModelAccessGrant
naming this service (also when it does not exist: no existence oracle)."""
TERMS_NOT_ACCEPTED: Final = "TermsNotAccepted"
"""The ModelVersion has terms whose digest is not in spec.acceptTerms."""
TERMS_EXPIRED: Final = "TermsExpired"
"""The ModelVersion's usage.expires has passed."""
CREDENTIALS_NOT_SHARED: Final = "CredentialsNotShared"
"""Another namespace's ModelVersion needs a credentials Secret, which never leaves its namespace."""
REQUEST_LOGGING_NOT_ALLOWED: Final = "RequestLoggingNotAllowed"
"""Triton flags that log or trace requests, for a ModelVersion whose terms forbid logging."""
TERMS_ACCEPTED: Final = "TermsAccepted"
"""Event: serving under a terms document began (its digest and time are in status)."""
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
PROMOTE_REQUESTED: Final = "PromoteRequested"
"""A person asked to skip the remaining canary steps (the serving.conch.dev/promote annotation)."""
NO_METRICS_SOURCE: Final = "NoMetricsSource"
"""A canary needs analysis but the operator has no metrics source: the rollout does not start."""
INCONCLUSIVE_LIMIT_REACHED: Final = "InconclusiveLimitReached"
"""spec.rollout.analysis.inconclusiveLimit inconclusive analyses in a row: the rollout stalled."""
ROLLOUT_DEADLINE_EXCEEDED: Final = "RolloutDeadlineExceeded"
"""No progress within spec.rollout.progressDeadline: the rollout stalled."""

# Endpoint keys (Events): a consumer's key written, replaced at a request, or revoked
KEY_ISSUED: Final = "KeyIssued"
KEY_ROTATED: Final = "KeyRotated"
KEY_REVOKED: Final = "KeyRevoked"
