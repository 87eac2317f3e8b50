"""May this ModelService serve that ModelVersion? Usage terms and grants, decided. Pure.

    check(service, name, version, grants, now) -> UsageRefused | None

The checks, in order (the first refusal is the one reported):

1. A version of another namespace is served only when BOTH its owner lists the service's
   namespace in `spec.usage.allowedNamespaces` AND a ModelAccessGrant in the version's
   namespace names the service (or all of its namespace) and the version (by name or by
   model). Otherwise `UsageNotGranted`, with the same message whether or not the version
   exists or parses, so a consumer cannot probe another team's namespace. Nothing else of
   that version is read before this passes. A version deleted while a grant still names
   the service (by that name, or by model) is no secret from it: it is reported missing
   like one of the service's own namespace, and what runs keeps running.
2. A version of another namespace whose artifact needs a credentials Secret:
   `CredentialsNotShared` (the Secret lives with its owner and never travels).
3. `usage.expires` reached: `TermsExpired` (`next_expiry` gives the instant to look again).
4. `usage.terms` whose digest is not in `spec.acceptTerms`: `TermsNotAccepted` (in the
   version's own namespace too).
5. `usage.data.logRequests` false and Triton flags that log or trace requests:
   `RequestLoggingNotAllowed`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence

from conch import tritonargs
from conch.api import ModelAccessGrant, ModelService, ModelVersion
from conch.api.modelservice import AcceptedTerms
from conch.errors import (
    CredentialsNotShared,
    RequestLoggingNotAllowed,
    TermsExpired,
    TermsNotAccepted,
    UsageNotGranted,
    UsageRefused,
)

QUIET_LOG_VERBOSE = frozenset({"0", "false"})
"""`--log-verbose` values that log nothing about requests."""


def model_namespace(svc: ModelService) -> str:
    """Where the service's ModelVersions live: spec.modelNamespace, else its own namespace."""
    return svc.spec.model_namespace or svc.metadata.namespace or ""


def cross_namespace(svc: ModelService) -> bool:
    return model_namespace(svc) != (svc.metadata.namespace or "")


def digest(mv: ModelVersion) -> str | None:
    """`sha256:<hex>` of the version's terms document, as spec.acceptTerms lists it."""
    terms = mv.spec.usage.terms if mv.spec.usage else None
    return f"sha256:{terms.sha256}" if terms else None


def granted(grants: Sequence[ModelAccessGrant], svc: ModelService, mv: ModelVersion) -> bool:
    """Whether a grant beside `mv` names this service and this version."""
    consumer, name = svc.metadata.namespace, svc.metadata.name
    for grant in grants:
        if grant.metadata.namespace != mv.metadata.namespace:
            continue  # only the version's own namespace can grant it
        names_consumer = any(
            c.namespace == consumer and (not c.service_names or name in c.service_names)
            for c in grant.spec.from_
        )
        names_version = any(
            t.model_version == mv.metadata.name
            or (t.model is not None and t.model == mv.spec.model)
            for t in grant.spec.to
        )
        if names_consumer and names_version:
            return True
    return False


def granted_if_gone(grants: Sequence[ModelAccessGrant], svc: ModelService, name: str) -> bool:
    """Whether a grant in the service's model namespace names this service and could name
    the missing version `name` (by that name, or by a model, which a deleted version no
    longer tells)."""
    where, consumer = model_namespace(svc), svc.metadata.namespace
    return any(
        grant.metadata.namespace == where
        and any(
            c.namespace == consumer
            and (not c.service_names or svc.metadata.name in c.service_names)
            for c in grant.spec.from_
        )
        and any(t.model_version == name or t.model is not None for t in grant.spec.to)
        for grant in grants
    )


def _allowed(
    svc: ModelService, mv: ModelVersion | None, grants: Sequence[ModelAccessGrant]
) -> bool:
    if mv is None or mv.spec.usage is None:
        return False
    return svc.metadata.namespace in mv.spec.usage.allowed_namespaces and granted(grants, svc, mv)


def logging_flags(extra_args: Sequence[str]) -> list[str]:
    """The Triton arguments that log or trace requests (as tritonserver resolves them)."""
    out = []
    for arg in tritonargs.parse(extra_args):
        name = arg.name or ""
        verbose = name == "log-verbose" and (arg.value or "").lower() not in QUIET_LOG_VERBOSE
        if verbose or name.startswith("trace-"):
            out.append(f"spec.triton.extraArgs[{arg.index}] {arg.written!r}")
    return out


def _expired(expires: dt.datetime, now: dt.datetime) -> bool:
    return now >= (expires if expires.tzinfo else expires.replace(tzinfo=dt.UTC))


def check(
    svc: ModelService,
    name: str,
    mv: ModelVersion | None,
    grants: Sequence[ModelAccessGrant],
    now: dt.datetime,
) -> UsageRefused | None:
    """Why `svc` may not serve the ModelVersion `name` (`mv`, None if absent), or None."""
    where = model_namespace(svc)
    if cross_namespace(svc):
        if mv is None and granted_if_gone(grants, svc, name):
            return None  # deleting a version never takes capacity away by itself
        if not _allowed(svc, mv, grants):
            return UsageNotGranted(
                f"ModelVersion {name!r} of namespace {where!r} is not granted to ModelService "
                f"{svc.metadata.name!r} of namespace {svc.metadata.namespace!r}: its "
                f"spec.usage.allowedNamespaces must list {svc.metadata.namespace!r} and a "
                f"ModelAccessGrant in {where!r} must name this service and version",
                name,
            )
        assert mv is not None  # granted implies present
        if mv.spec.source.credentials_secret_ref is not None:
            return CredentialsNotShared(
                f"ModelVersion {name!r} of namespace {where!r} needs the credentials Secret "
                f"{mv.spec.source.credentials_secret_ref.name!r}, which stays in {where!r}: "
                "only ModelVersions whose artifact needs no credentials are served across "
                "namespaces",
                name,
            )
    usage = mv.spec.usage if mv else None
    if usage is None:
        return None
    if usage.expires is not None and _expired(usage.expires, now):
        return TermsExpired(
            f"the terms of ModelVersion {name!r} expired at "
            f"{usage.expires.isoformat().replace('+00:00', 'Z')}: it may no longer be served",
            name,
        )
    assert mv is not None
    wanted = digest(mv)
    if wanted is not None and wanted not in svc.spec.accept_terms:
        terms = usage.terms
        return TermsNotAccepted(
            f"ModelVersion {name!r} is served under the terms at {terms.uri if terms else ''}: "
            f"read them and add {wanted!r} to spec.acceptTerms",
            name,
        )
    if not usage.data.log_requests and (flags := logging_flags(svc.spec.triton.extra_args)):
        return RequestLoggingNotAllowed(
            f"the terms of ModelVersion {name!r} forbid logging requests "
            f"(usage.data.logRequests is false): remove {', '.join(flags)}",
            name,
        )
    return None


def next_expiry(versions: Iterable[ModelVersion], now: dt.datetime) -> dt.datetime | None:
    """The earliest expiry still ahead among `versions`: the instant to look again."""
    ahead = [
        e if e.tzinfo else e.replace(tzinfo=dt.UTC)
        for mv in versions
        if mv.spec.usage and (e := mv.spec.usage.expires) is not None
    ]
    return min((e for e in ahead if e > now), default=None)


def accepted(
    svc: ModelService, versions: Mapping[str, ModelVersion], served: Iterable[str], now: dt.datetime
) -> list[AcceptedTerms]:
    """The terms in force for the versions served, each with the time it was first seen
    accepted (kept from status while the same digest stays in force)."""
    before = {
        (a.model_version, a.digest): a.accepted_at
        for a in (svc.status.accepted_terms if svc.status else [])
    }
    out = []
    for name in sorted(set(served)):
        mv = versions.get(name)
        if mv is not None and (wanted := digest(mv)) is not None:
            since = before.get((name, wanted), now)
            out.append(AcceptedTerms(model_version=name, digest=wanted, accepted_at=since))
    return out
