"""`usage.check`: may a ModelService serve a ModelVersion? A table of consumers and terms."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from conch import reasons, usage
from conch.api import ModelAccessGrant, ModelService, ModelVersion

ROOT = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
DIGEST = "sha256:" + "b" * 64
TERMS = {"uri": "https://models.example/terms/v1", "sha256": "b" * 64}


def mv(
    namespace: str = "team-a",
    usage_terms: dict[str, Any] | None = None,
    secret: str | None = None,
    name: str = "digits-v1",
) -> ModelVersion:
    raw = yaml.safe_load((ROOT / "examples/modelversion.yaml").read_text())
    raw["metadata"] |= {"name": name, "namespace": namespace}
    if usage_terms is not None:
        raw["spec"]["usage"] = usage_terms
    if secret:
        raw["spec"]["source"]["credentialsSecretRef"] = {"name": secret}
    return ModelVersion.model_validate(raw)


def svc(
    namespace: str = "team-b", model_namespace: str | None = "team-a", **spec: Any
) -> ModelService:
    raw = yaml.safe_load((ROOT / "examples/modelservice.yaml").read_text())
    raw["metadata"] |= {"namespace": namespace, "name": "digits"}
    raw["spec"] |= {"modelNamespace": model_namespace, **spec}
    raw["spec"] = {k: v for k, v in raw["spec"].items() if v is not None}
    return ModelService.model_validate(raw)


def grant(
    namespace: str = "team-a",
    consumer: str = "team-b",
    services: list[str] | None = None,
    to: dict[str, str] | None = None,
) -> ModelAccessGrant:
    return ModelAccessGrant.model_validate(
        {
            "metadata": {"name": "g", "namespace": namespace},
            "spec": {
                "from": [{"namespace": consumer, "serviceNames": services or []}],
                "to": [to or {"model": "digits"}],
            },
        }
    )


SHARED = {"allowedNamespaces": ["team-b"]}
GRANTED = [grant()]


def reason(
    service: ModelService,
    version: ModelVersion | None,
    grants: list[ModelAccessGrant],
    now: dt.datetime = NOW,
) -> str | None:
    error = usage.check(service, "digits-v1", version, grants, now)
    return error.reason if error else None


@pytest.mark.parametrize(
    ("service", "version", "grants", "expected"),
    [
        # the version's own namespace: no grant needed, no terms, nothing to refuse
        (svc("team-a", None), mv(), [], None),
        (svc("team-a", "team-a"), mv(), [], None),
        # another namespace: both parties must agree
        (svc(), mv(usage_terms=SHARED), GRANTED, None),
        (svc(), mv(usage_terms=SHARED), [], reasons.USAGE_NOT_GRANTED),
        (svc(), mv(usage_terms={}), GRANTED, reasons.USAGE_NOT_GRANTED),
        (svc(), mv(), GRANTED, reasons.USAGE_NOT_GRANTED),  # no usage: private
        (svc(), None, [], reasons.USAGE_NOT_GRANTED),  # absent: the same answer
        # deleted while a grant still names the service: no secret from it; the plan reports
        # it missing and keeps what runs (deleting a version never takes capacity away)
        (svc(), None, GRANTED, None),
        (svc(), None, [grant(to={"modelVersion": "digits-v1"})], None),
        (svc(), None, [grant(to={"modelVersion": "digits-v2"})], reasons.USAGE_NOT_GRANTED),
        (svc(), None, [grant(consumer="team-c")], reasons.USAGE_NOT_GRANTED),
        (svc(), None, [grant(namespace="team-b")], reasons.USAGE_NOT_GRANTED),
        (svc(), mv(usage_terms={"allowedNamespaces": ["team-c"]}), GRANTED, "UsageNotGranted"),
        # the grant must name this namespace, this service, this version, from beside it
        (svc(), mv(usage_terms=SHARED), [grant(consumer="team-c")], "UsageNotGranted"),
        (svc(), mv(usage_terms=SHARED), [grant(services=["other"])], "UsageNotGranted"),
        (svc(), mv(usage_terms=SHARED), [grant(services=["digits"])], None),
        (svc(), mv(usage_terms=SHARED), [grant(to={"model": "letters"})], "UsageNotGranted"),
        (svc(), mv(usage_terms=SHARED), [grant(to={"modelVersion": "digits-v1"})], None),
        (
            svc(),
            mv(usage_terms=SHARED),
            [grant(to={"modelVersion": "digits-v2"})],
            "UsageNotGranted",
        ),
        (svc(), mv(usage_terms=SHARED), [grant(namespace="team-b")], "UsageNotGranted"),
        # a Secret never travels
        (svc(), mv(usage_terms=SHARED, secret="s3"), GRANTED, reasons.CREDENTIALS_NOT_SHARED),
        (svc("team-a", None), mv(secret="s3"), [], None),
        # terms: accepted by digest, in the same namespace too
        (svc("team-a", None), mv(usage_terms={"terms": TERMS}), [], reasons.TERMS_NOT_ACCEPTED),
        (svc("team-a", None, acceptTerms=[DIGEST]), mv(usage_terms={"terms": TERMS}), [], None),
        (
            svc(acceptTerms=["sha256:" + "c" * 64]),
            mv(usage_terms={**SHARED, "terms": TERMS}),
            GRANTED,
            reasons.TERMS_NOT_ACCEPTED,
        ),
        (svc(acceptTerms=[DIGEST]), mv(usage_terms={**SHARED, "terms": TERMS}), GRANTED, None),
        # a refused grant is reported before the terms (nothing else is read)
        (svc(), mv(usage_terms={"terms": TERMS}), [], reasons.USAGE_NOT_GRANTED),
        # expiry: at the instant, not a second later
        (
            svc("team-a", None),
            mv(usage_terms={"expires": "2026-12-02T12:00:00Z"}),
            [],
            "TermsExpired",
        ),
        (svc("team-a", None), mv(usage_terms={"expires": "2026-12-02T12:00:01Z"}), [], None),
        (
            svc("team-a", None, acceptTerms=[DIGEST]),
            mv(usage_terms={"terms": TERMS, "expires": "2026-01-01T00:00:00+01:00"}),
            [],
            reasons.TERMS_EXPIRED,
        ),
    ],
)
def test_who_may_serve_what(
    service: ModelService,
    version: ModelVersion | None,
    grants: list[ModelAccessGrant],
    expected: str | None,
) -> None:
    assert reason(service, version, grants) == expected


def test_not_granted_says_the_same_whether_or_not_the_version_exists() -> None:
    absent = usage.check(svc(), "digits-v1", None, [], NOW)
    private = usage.check(svc(), "digits-v1", mv(usage_terms={"terms": TERMS}), [], NOW)
    assert absent is not None and private is not None
    assert absent.message == private.message
    assert "team-b" in absent.message and "ModelAccessGrant" in absent.message
    assert TERMS["uri"] not in private.message  # nothing of the version leaks


@pytest.mark.parametrize(
    ("args", "refused"),
    [
        ([], []),
        (["--log-verbose=0"], []),
        (["--log-info=true", "--log-format=ISO8601"], []),
        (["--log-verbose=1"], ["--log-verbose=1"]),
        (["--log-verbose", "2"], ["--log-verbose 2"]),
        (["--log-verb=1"], ["--log-verb=1"]),  # tritonserver's abbreviation is the same flag
        (
            ["--trace-config", "mode=triton", "--trace-file=/tmp/t.json"],
            ["--trace-config mode=triton", "--trace-file=/tmp/t.json"],
        ),
    ],
)
def test_request_logging_flags(args: list[str], refused: list[str]) -> None:
    assert [f.split(" ", 1)[1].strip("'") for f in usage.logging_flags(args)] == refused


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({}, reasons.REQUEST_LOGGING_NOT_ALLOWED),
        ({"retain": True, "retention": "720h"}, reasons.REQUEST_LOGGING_NOT_ALLOWED),
        ({"retain": True, "logRequests": True}, None),
    ],
)
def test_terms_that_forbid_logging_refuse_verbose_triton(
    data: dict[str, Any], expected: str | None
) -> None:
    service = svc("team-a", None, triton={"extraArgs": ["--log-verbose=1"]})
    assert reason(service, mv(usage_terms={"data": data}), []) == expected
    # without usage terms, Conch's own policy (conch.policy) alone decides
    assert reason(service, mv(), []) is None


def test_next_expiry_is_the_earliest_still_ahead() -> None:
    versions = [
        mv(usage_terms={"expires": "2026-12-01T00:00:00Z"}),
        mv(usage_terms={"expires": "2026-12-03T00:00:00Z"}),
        mv(usage_terms={"expires": "2026-12-02T13:00:00Z"}),
        mv(),
    ]
    assert usage.next_expiry(versions, NOW) == dt.datetime(2026, 12, 2, 13, tzinfo=dt.UTC)
    assert usage.next_expiry([mv()], NOW) is None


def test_acceptance_keeps_its_first_time_while_the_digest_stays() -> None:
    version = mv("team-a", usage_terms={"terms": TERMS})
    service = svc("team-a", None, acceptTerms=[DIGEST])
    first = usage.accepted(service, {"digits-v1": version}, ["digits-v1"], NOW)
    assert [(a.model_version, a.digest, a.accepted_at) for a in first] == [
        ("digits-v1", DIGEST, NOW)
    ]
    raw = service.model_dump(mode="json", by_alias=True, exclude_none=True)
    raw["status"] = {"acceptedTerms": [a.model_dump(mode="json") for a in first]}
    later = usage.accepted(
        ModelService.model_validate(raw),
        {"digits-v1": version},
        ["digits-v1"],
        NOW + dt.timedelta(hours=1),
    )
    assert later == first
    assert usage.accepted(service, {"digits-v1": mv("team-a")}, ["digits-v1"], NOW) == []
