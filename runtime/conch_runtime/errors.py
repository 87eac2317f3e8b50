"""The one exception tree of `conch pull`.

Every failure a pull can meet is one of these classes, so callers (the CLI, and through its
exit code and stderr line the operator) can tell "try again later" from "this artifact will
never work" without parsing messages::

    PullError                   reason PullFailed            exit 1
    ├── InvalidArgument         reason InvalidArgument       exit 3   bad digest, bad limit
    ├── UnsupportedSource       reason UnsupportedSource     exit 4   unknown scheme, bad URI
    ├── NotFound                reason ArtifactNotFound      exit 5   404, NoSuchKey, no file
    ├── AccessDenied            reason AccessDenied          exit 6   401/403, no credentials
    ├── SourceRejected          reason SourceRejected        exit 7   other 4xx answers
    ├── SourceUnavailable       reason SourceUnavailable     exit 8   transient: retried
    ├── DigestMismatch          reason DigestMismatch        exit 9
    ├── TooLarge                reason ArtifactTooLarge      exit 10  download or unpacked size
    ├── HostileArchive          reason HostileArchive        exit 11  unsafe member
    ├── InvalidArchive          reason InvalidArchive        exit 12  not a readable tar
    ├── DestinationError        reason DestinationError      exit 13  cannot write dest
    └── CredentialsNotAllowed   reason CredentialsNotAllowed exit 14  host/bucket not allowed

Exit code 2 is left to argparse (usage errors). `reason` is CamelCase so it can be copied
into a Kubernetes condition as is. Only `SourceUnavailable` is ever retried.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AccessDenied",
    "CredentialsNotAllowed",
    "DestinationError",
    "DigestMismatch",
    "HostileArchive",
    "InvalidArchive",
    "InvalidArgument",
    "NotFound",
    "PullError",
    "SourceRejected",
    "SourceUnavailable",
    "TooLarge",
    "UnsupportedSource",
]


class PullError(Exception):
    """Base of every pull failure; `reason` and `exit_code` are fixed per class."""

    reason: ClassVar[str] = "PullFailed"
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(PullError):
    """The caller's request is malformed (digest not 64 hex digits, negative limit, ...)."""

    reason = "InvalidArgument"
    exit_code = 3


class UnsupportedSource(PullError):
    """The URI has an unknown scheme or a shape the scheme does not allow."""

    reason = "UnsupportedSource"
    exit_code = 4


class NotFound(PullError):
    """The source answered that the artifact does not exist; retrying will not help."""

    reason = "ArtifactNotFound"
    exit_code = 5


class AccessDenied(PullError):
    """The source refused our credentials (or we had none); retrying will not help."""

    reason = "AccessDenied"
    exit_code = 6


class SourceRejected(PullError):
    """The source refused the request for another permanent reason (an unexpected 4xx)."""

    reason = "SourceRejected"
    exit_code = 7


class SourceUnavailable(PullError):
    """A transient failure (connection error, 5xx, 429, throttling): worth retrying.

    `retry_after` carries a server's hint in seconds, when it gave one.
    """

    reason = "SourceUnavailable"
    exit_code = 8

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DigestMismatch(PullError):
    """The downloaded bytes do not hash to the declared sha256; nothing was unpacked."""

    reason = "DigestMismatch"
    exit_code = 9


class TooLarge(PullError):
    """The artifact, or what it unpacks to, exceeds a configured limit."""

    reason = "ArtifactTooLarge"
    exit_code = 10


class HostileArchive(PullError):
    """A member would escape the destination or is not a plain file or directory."""

    reason = "HostileArchive"
    exit_code = 11


class InvalidArchive(PullError):
    """The verified bytes are not a readable (optionally compressed) tar archive."""

    reason = "InvalidArchive"
    exit_code = 12


class DestinationError(PullError):
    """The destination cannot be written, or holds something conch did not put there."""

    reason = "DestinationError"
    exit_code = 13


class CredentialsNotAllowed(PullError):
    """Credentials are configured but the URI's host or bucket is not on the admin's list.

    Refused before any connection, so a tenant's URI cannot carry the pod's credentials to a
    host of its choosing.
    """

    reason = "CredentialsNotAllowed"
    exit_code = 14
