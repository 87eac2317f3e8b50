"""One exception tree for the operator. Each error carries the condition reason it becomes.

    ConchError                  (reason, permanent?)
    ├── ModelVersionNotFound    the referenced ModelVersion does not exist (yet)   permanent*
    ├── InvalidSpec             the objects the spec implies were refused          permanent
    ├── PolicyViolation         the spec asks for what the admin's PodPolicy bars  permanent
    ├── NameConflict            a child's name is held by someone else's object    permanent
    ├── CredentialsNotAllowed   the Secret or the artifact host is not allowed     permanent
    ├── SourceNotAllowed        the artifact URI is refused (file://, malformed)   permanent
    ├── UsageRefused            a ModelVersion's usage terms or grants refuse it    permanent*
    │   ├── UsageNotGranted, TermsNotAccepted, TermsExpired
    │   └── CredentialsNotShared, RequestLoggingNotAllowed
    └── ApiError                a Kubernetes API call failed          temporary unless refused

*permanent for this spec: retried when the ModelVersion appears, not on a timer.
Foreign errors (conch.rest.RestError: an HTTP status, or no answer) are translated once, in
conch.kube.
"""

from __future__ import annotations

from collections.abc import Sequence

from conch import reasons


class ConchError(Exception):
    reason: str = reasons.API_ERROR
    temporary: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ModelVersionNotFound(ConchError):
    reason = reasons.MODEL_VERSION_NOT_FOUND


class InvalidSpec(ConchError):
    reason = reasons.INVALID_SPEC


class NameConflict(ConchError):
    reason = reasons.NAME_CONFLICT


class CredentialsNotAllowed(ConchError):
    reason = reasons.CREDENTIALS_NOT_ALLOWED


class SourceNotAllowed(ConchError):
    reason = reasons.SOURCE_NOT_ALLOWED


class UsageRefused(ConchError):
    """A ModelVersion's terms or grants do not let this service serve it (conch.usage).
    `version` names it: when that version is running, the service is scaled to zero."""

    def __init__(self, message: str, version: str) -> None:
        super().__init__(message)
        self.version = version


class UsageNotGranted(UsageRefused):
    reason = reasons.USAGE_NOT_GRANTED


class TermsNotAccepted(UsageRefused):
    reason = reasons.TERMS_NOT_ACCEPTED


class TermsExpired(UsageRefused):
    reason = reasons.TERMS_EXPIRED


class CredentialsNotShared(UsageRefused):
    reason = reasons.CREDENTIALS_NOT_SHARED


class RequestLoggingNotAllowed(UsageRefused):
    reason = reasons.REQUEST_LOGGING_NOT_ALLOWED


class PolicyViolation(ConchError):
    """Pod settings the admin's PodPolicy does not allow (conch.policy.violations), all at once."""

    reason = reasons.POLICY_VIOLATION

    def __init__(self, violations: Sequence[str]) -> None:
        super().__init__("; ".join(violations))
        self.violations = tuple(violations)


class ApiError(ConchError):
    """An API call failed; `temporary` says whether asking again can help (see
    `conch.kube.retryable`): a refusal that will not change on retry is reported, not
    retried with backoff for ever."""

    reason = reasons.API_ERROR

    def __init__(self, message: str, status: int = 0, temporary: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.temporary = temporary
