"""Where a ModelVersion's artifact may come from, and where its credentials may go. Pure.

A tenant who may write ModelVersions but not read Secrets must not be able to point a pull
at a Secret of the namespace (a ServiceAccount token, say) and a host of their choosing.
So a Secret is usable as artifact credentials only when whoever owns it opted in:

- the label `serving.conch.dev/artifact-credentials: "true"`;
- never a ServiceAccount token (its `kubernetes.io/service-account.name` annotation);
- the credentials go only to the hosts and buckets the admin allows: the operator's
  `--credentials-host` list, plus the Secret's own `serving.conch.dev/credentials-hosts`
  annotation (comma-separated, same syntax: `host[:port]`, `*.domain`, bucket names).

The operator reads only the Secret's metadata (never its data) and passes the pull step
exactly the targets it checked, so the init container enforces the same decision.
`file://` reads the runtime container's own files and is for the sandbox and tests: the
operator refuses it unless started with `--allow-file-sources`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from conch.api import ModelVersion
from conch.errors import CredentialsNotAllowed, SourceNotAllowed
from conch_runtime.access import HostPattern, credential_targets
from conch_runtime.errors import PullError
from conch_runtime.uri import FileSource, parse_uri

OPT_IN_LABEL: Final = "serving.conch.dev/artifact-credentials"
HOSTS_ANNOTATION: Final = "serving.conch.dev/credentials-hosts"
SERVICE_ACCOUNT_ANNOTATION: Final = "kubernetes.io/service-account.name"


@dataclass(frozen=True)
class ArtifactAccess:
    """The admin's settings for artifact sources (operator flags)."""

    credentials_hosts: tuple[str, ...] = ()
    """Hosts and buckets any opted-in Secret's credentials may go to."""
    allow_file: bool = False
    """Whether `file://` sources are served (sandbox and tests only)."""
    s3_endpoint: str | None = None
    """The S3 endpoint pulls use (None: the SDK's default)."""


def _target(name: str, port: int | None) -> str:
    host = f"[{name}]" if ":" in name else name
    return host if port is None else f"{host}:{port}"


def check(mv: ModelVersion, secret: dict[str, Any] | None, access: ArtifactAccess) -> list[str]:
    """The `--credentials-host` values for the pull of `mv`: exactly the places its
    credentials will reach, each checked. `secret` is the metadata of the referenced Secret
    (None when `mv` names none, or it does not exist). Raises SourceNotAllowed or
    CredentialsNotAllowed with the reason a user can act on."""
    source = mv.spec.source
    try:
        parsed = parse_uri(source.uri)
    except PullError as error:
        raise SourceNotAllowed(error.message) from None
    if isinstance(parsed, FileSource) and not access.allow_file:
        raise SourceNotAllowed(
            f"{source.uri}: file:// is for the sandbox and tests only (the operator was not "
            "started with --allow-file-sources); use s3://, http(s):// or pvc://"
        )
    ref = source.credentials_secret_ref
    if ref is None:
        return []
    if secret is None:
        raise CredentialsNotAllowed(f"Secret {ref.name!r} (credentialsSecretRef) not found")
    meta = secret.get("metadata", {})
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    if SERVICE_ACCOUNT_ANNOTATION in annotations:
        raise CredentialsNotAllowed(
            f"Secret {ref.name!r} is a ServiceAccount token and is never used as artifact "
            "credentials"
        )
    if labels.get(OPT_IN_LABEL) != "true":
        raise CredentialsNotAllowed(
            f"Secret {ref.name!r} has not opted in as artifact credentials: its owner must "
            f"label it {OPT_IN_LABEL}=true"
        )
    allowed = list(access.credentials_hosts)
    allowed += [h for h in annotations.get(HOSTS_ANNOTATION, "").split(",") if h.strip()]
    try:
        patterns = [HostPattern.parse(h) for h in allowed]
    except PullError as error:
        raise CredentialsNotAllowed(f"Secret {ref.name!r}: {error.message}") from None
    targets = credential_targets(parsed, access.s3_endpoint)
    refused = [
        _target(name, port)
        for name, port in targets
        if not any(p.matches(name, port) for p in patterns)
    ]
    if refused:
        raise CredentialsNotAllowed(
            f"the credentials of Secret {ref.name!r} may not go to {', '.join(refused)}: "
            f"allowed are {', '.join(allowed) or 'no hosts'} (the operator's "
            f"--credentials-host and the Secret's {HOSTS_ANNOTATION} annotation)"
        )
    return [_target(name, port) for name, port in targets]
