"""The plan under usage terms: refusals before serving, scale to zero on revocation or
expiry (nothing deleted), back when allowed again, acceptance recorded."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from conch import plan, reasons
from conch.api import ModelAccessGrant, ModelService, ModelVersion
from tests.unit.test_plan import (
    DEPLOYMENT,
    NOW,
    SETTINGS,
    example,
    ready_reason,
    running,
    service,
    settled,
    snapshot,
)

TERMS = {"uri": "https://models.example/terms/v1", "sha256": "b" * 64}
DIGEST = "sha256:" + "b" * 64
GRANT = ModelAccessGrant.model_validate(
    {
        "metadata": {"name": "to-ml", "namespace": "team-a"},
        "spec": {"from": [{"namespace": "ml"}], "to": [{"model": "digits"}]},
    }
)


def shared(name: str = "digits-v1", **terms: Any) -> ModelVersion:
    raw = example("modelversion.yaml")
    raw["metadata"] |= {"name": name, "namespace": "team-a"}
    raw["spec"]["usage"] = {"allowedNamespaces": ["ml"], **terms}
    return ModelVersion.model_validate(raw)


def consumer(**spec: Any) -> ModelService:
    return service(modelNamespace="team-a", **spec)


def serving(svc: ModelService, version: ModelVersion) -> plan.Snapshot:
    """`svc` served `version` (granted) and is Ready."""
    first = plan.plan(
        snapshot(svc, versions={version.metadata.name: version}, grants=[GRANT]), SETTINGS, NOW
    )
    assert first.write, first.status
    snap = settled(svc, first)
    return dataclasses.replace(snap, versions={version.metadata.name: version}, grants=[GRANT])


def ready_reason_of(svc: ModelService) -> str:
    return next(
        c.reason for c in (svc.status.conditions if svc.status else []) if c.type == "Ready"
    )


def events(decided: plan.Plan) -> list[tuple[str, str]]:
    return [(e.type, e.reason) for e in decided.events]


def test_without_a_grant_nothing_is_created_and_it_says_why() -> None:
    decided = plan.plan(snapshot(consumer(), versions={"digits-v1": shared()}), SETTINGS, NOW)
    assert decided.write == () and decided.scale == () and decided.delete == ()
    assert ready_reason(decided) == ("False", reasons.USAGE_NOT_GRANTED)
    assert ("Warning", reasons.USAGE_NOT_GRANTED) in events(decided)


def test_a_granted_version_of_another_namespace_is_served_and_not_counted_as_its_user() -> None:
    snap = serving(consumer(), shared())
    decided = plan.plan(snap, SETTINGS, NOW)
    assert ready_reason(decided) == ("True", reasons.AVAILABLE)
    svc = snap.service
    kept = {  # what the operator watches of it, for the owner's usedBy
        "metadata": {"name": svc.metadata.name, "namespace": svc.metadata.namespace},
        "spec": {
            "modelVersion": svc.spec.model_version,
            "modelNamespace": svc.spec.model_namespace,
        },
        "status": decided.status or {},
    }
    assert plan.uses(kept) == set()  # the owner's ModelVersion status is left alone


def test_revoking_the_grant_scales_to_zero_and_deletes_nothing() -> None:
    snap = serving(consumer(), shared())
    decided = plan.plan(dataclasses.replace(snap, grants=[]), SETTINGS, NOW)
    assert decided.scale == ((DEPLOYMENT, 0),)
    assert decided.write == () and decided.delete == ()
    assert ready_reason(decided) == ("False", reasons.USAGE_NOT_GRANTED)
    assert ("Warning", reasons.SCALED_TO_ZERO) in events(decided)
    assert ("Warning", reasons.USAGE_NOT_GRANTED) in events(decided)


def test_deleting_a_granted_version_keeps_what_runs() -> None:
    snap = serving(consumer(), shared())
    decided = plan.plan(dataclasses.replace(snap, versions={}), SETTINGS, NOW)
    assert decided.scale == () and decided.delete == ()  # never takes capacity away
    conditions = {c["type"]: c for c in (decided.status or {}).get("conditions", [])}
    assert conditions["Degraded"]["reason"] == reasons.MODEL_VERSION_NOT_FOUND
    assert ready_reason(decided)[0] == "True"


def test_deleting_a_version_whose_grant_is_gone_too_scales_to_zero() -> None:
    snap = serving(consumer(), shared())
    decided = plan.plan(dataclasses.replace(snap, versions={}, grants=[]), SETTINGS, NOW)
    assert decided.scale == ((DEPLOYMENT, 0),)
    assert ready_reason(decided) == ("False", reasons.USAGE_NOT_GRANTED)


def _suspended(snap: plan.Snapshot) -> plan.Snapshot:
    """`snap` after its Deployments were scaled to zero and the refusal was written."""
    owned = {
        key: (
            obj | {"spec": obj["spec"] | {"replicas": 0}, "status": {"replicas": 0}}
            if key[0] == "Deployment"
            else obj
        )
        for key, obj in snap.owned.items()
    }
    deployments = {
        v: owned["Deployment", d["metadata"]["name"]] for v, d in snap.deployments.items()
    }
    zeroed = dataclasses.replace(snap, owned=owned, deployments=deployments, grants=[])
    revoked = plan.plan(zeroed, SETTINGS, NOW)
    raw = snap.service.model_dump(mode="json", by_alias=True, exclude_none=True)
    raw["status"] = {
        k: v for k, v in (raw.get("status", {}) | (revoked.status or {})).items() if v is not None
    }
    return dataclasses.replace(zeroed, service=ModelService.model_validate(raw), grants=[GRANT])


def test_still_refused_while_scaled_to_zero_changes_nothing() -> None:
    idle = _suspended(serving(consumer(), shared()))
    again = plan.plan(dataclasses.replace(idle, grants=[]), SETTINGS, NOW)
    assert ready_reason_of(idle.service) == reasons.USAGE_NOT_GRANTED
    assert again.scale == () and again.write == () and again.status is None
    assert again.events == ()


def test_granted_again_an_autoscaled_service_comes_back_to_its_minimum() -> None:
    svc = consumer()
    assert svc.spec.autoscaling is not None
    idle = _suspended(serving(svc, shared()))
    back = plan.plan(idle, SETTINGS, NOW)
    deployment = next(o for o in back.write if o["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == svc.spec.autoscaling.min_replicas
    assert back.scale == () and back.delete == ()


def test_granted_again_a_fixed_size_service_is_applied_at_its_size() -> None:
    svc = consumer(autoscaling=None, replicas=3)
    idle = _suspended(serving(svc, shared()))
    back = plan.plan(idle, SETTINGS, NOW)
    deployment = next(o for o in back.write if o["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 3 and back.scale == ()


def test_expiry_while_serving_scales_to_zero_and_is_looked_at_on_the_instant() -> None:
    expires = NOW + dt.timedelta(minutes=30)
    version = shared(expires=expires.isoformat())
    snap = serving(consumer(), version)
    before = plan.plan(snap, SETTINGS, NOW)
    assert before.requeue_after == 30 * 60
    after = plan.plan(snap, SETTINGS, expires)
    assert after.scale == ((DEPLOYMENT, 0),)
    assert ready_reason(after) == ("False", reasons.TERMS_EXPIRED)


def test_acceptance_is_recorded_with_an_event_once() -> None:
    svc = consumer(acceptTerms=[DIGEST])
    version = shared(terms=TERMS)
    first = plan.plan(snapshot(svc, versions={"digits-v1": version}, grants=[GRANT]), SETTINGS, NOW)
    assert first.status is not None
    assert first.status["acceptedTerms"] == [
        {"modelVersion": "digits-v1", "digest": DIGEST, "acceptedAt": "2026-12-02T12:00:00Z"}
    ]
    assert ("Normal", reasons.TERMS_ACCEPTED) in events(first)
    snap = dataclasses.replace(settled(svc, first), versions={"digits-v1": version}, grants=[GRANT])
    later = plan.plan(snap, SETTINGS, NOW + dt.timedelta(hours=1))
    assert reasons.TERMS_ACCEPTED not in [r for _, r in events(later)]


def test_terms_withdrawn_from_accept_terms_scale_to_zero_and_drop_the_record() -> None:
    svc = consumer(acceptTerms=[DIGEST])
    version = shared(terms=TERMS)
    first = plan.plan(snapshot(svc, versions={"digits-v1": version}, grants=[GRANT]), SETTINGS, NOW)
    snap = settled(svc, first)
    raw = snap.service.model_dump(mode="json", by_alias=True, exclude_none=True)
    raw["spec"]["acceptTerms"] = []
    withdrawn = dataclasses.replace(
        snap,
        service=ModelService.model_validate(raw),
        versions={"digits-v1": version},
        grants=[GRANT],
    )
    decided = plan.plan(withdrawn, SETTINGS, NOW)
    assert decided.scale == ((DEPLOYMENT, 0),)
    assert ready_reason(decided) == ("False", reasons.TERMS_NOT_ACCEPTED)
    assert decided.status is not None and not decided.status.get("acceptedTerms")


def test_a_rollout_to_an_ungranted_version_is_refused_and_the_stable_keeps_serving() -> None:
    snap = serving(consumer(), shared())
    raw = snap.service.model_dump(mode="json", by_alias=True, exclude_none=True)
    raw["spec"]["modelVersion"] = "digits-v2"
    moved = dataclasses.replace(
        snap,
        service=ModelService.model_validate(raw),
        versions={"digits-v1": shared(), "digits-v2": shared("digits-v2", allowedNamespaces=[])},
    )
    decided = plan.plan(moved, SETTINGS, NOW)
    assert decided.scale == () and decided.write == ()
    assert ready_reason(decided) == ("True", reasons.AVAILABLE)
    degraded = next(c for c in (decided.status or {})["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == reasons.USAGE_NOT_GRANTED


def test_the_running_deployments_are_what_the_owned_objects_say() -> None:
    # guard for the helpers above: `running` keeps what was written
    written = plan.plan(snapshot(service()), SETTINGS, NOW).write
    assert ("Deployment", DEPLOYMENT) in running(written)
