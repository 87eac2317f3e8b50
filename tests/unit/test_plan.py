"""`plan(snapshot, settings, now)`: one reconcile's decisions, as a table of snapshots."""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from conch import plan, reasons
from conch.api import ModelService, ModelVersion
from conch.builders import Capabilities, PodSettings
from conch.builders.meta import VERSION_LABEL, version_child_name

ROOT = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
SETTINGS = PodSettings()
DEPLOYMENT = version_child_name("digits", "digits-v1")


def example(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "examples" / name).read_text()))


def service(status: dict[str, Any] | None = None, **spec: Any) -> ModelService:
    raw = example("modelservice.yaml")
    raw["metadata"] |= {"namespace": "ml", "uid": "uid-1", "generation": 1}
    raw["spec"] |= spec
    raw["spec"] = {k: v for k, v in raw["spec"].items() if v is not None}
    if status:
        raw["status"] = status
    return ModelService.model_validate(raw)


def version(name: str = "digits-v1", secret: str | None = None) -> ModelVersion:
    raw = example("modelversion.yaml")
    raw["metadata"] |= {"name": name, "namespace": "ml"}
    if secret:
        raw["spec"]["source"]["credentialsSecretRef"] = {"name": secret}
    return ModelVersion.model_validate(raw)


def snapshot(svc: ModelService, **parts: Any) -> plan.Snapshot:
    parts.setdefault("versions", {"digits-v1": version()})
    parts.setdefault("deployments", {})
    return plan.Snapshot(service=svc, annotations=parts.pop("annotations", {}), **parts)


def running(
    written: tuple[dict[str, Any], ...], ready: int = 2, replicas: int = 2
) -> dict[tuple[str, str], dict[str, Any]]:
    """What the cluster holds after `written` was applied: the same objects, defaulted, with
    a status; Deployments `ready` of `replicas`."""
    live = {}
    for obj in written:
        held = copy.deepcopy(obj)
        held["metadata"]["uid"] = f"uid-{obj['metadata']['name']}"
        held["metadata"]["resourceVersion"] = "7"
        if obj["kind"] == "Deployment":
            held["spec"].setdefault("replicas", replicas)
            held["status"] = {"replicas": replicas, "readyReplicas": ready}
        if obj["kind"] == "Service":
            held["spec"]["clusterIP"] = "10.96.0.10"  # a default the API server adds
        live[obj["kind"], obj["metadata"]["name"]] = held
    return live


def settled(
    svc: ModelService, first: plan.Plan, before: plan.Snapshot | None = None
) -> plan.Snapshot:
    """The snapshot after `first` was carried out (on top of `before`) and its status
    written."""
    owned = {**(before.owned if before else {}), **running(first.write)}
    current = svc.model_dump(mode="json", by_alias=True, exclude_none=True).get("status", {})
    status = {k: v for k, v in (current | (first.status or {})).items() if v is not None}
    raw = svc.model_dump(mode="json", by_alias=True, exclude_none=True) | {"status": status}
    again = ModelService.model_validate(raw)
    deployments = {
        o["metadata"]["labels"][VERSION_LABEL]: o
        for (k, _), o in owned.items()
        if k == "Deployment"
    }
    return snapshot(again, owned=owned, deployments=deployments)


def kinds(objects: tuple[dict[str, Any], ...]) -> list[str]:
    return sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objects)


def ready_reason(decided: plan.Plan) -> tuple[str, str]:
    assert decided.status is not None
    cond = next(c for c in decided.status["conditions"] if c["type"] == "Ready")
    return cond["status"], cond["reason"]


def test_a_new_service_writes_everything_after_a_dry_run() -> None:
    decided = plan.plan(snapshot(service()), SETTINGS, NOW)
    assert kinds(decided.write) == [
        f"Deployment/{DEPLOYMENT}",
        "HorizontalPodAutoscaler/digits",
        "NetworkPolicy/digits",
        "PodDisruptionBudget/digits",
        "Service/digits",
    ]
    assert decided.dry_run and decided.check == decided.write and decided.delete == ()
    assert decided.at_once  # no child yet: the order of the writes cannot matter
    assert ready_reason(decided) == ("False", reasons.REPLICAS_UNAVAILABLE)
    assert decided.requeue_after == plan.NOT_READY_POLL


def test_only_a_new_services_children_are_created_with_the_checks() -> None:
    """`Plan.create`: a POST in the round of dry runs, for a service's first reconcile."""
    new = plan.plan(snapshot(service()), SETTINGS, NOW)
    assert sorted(new.create) == [  # all but the Service, created off the reconcile
        ("Deployment", DEPLOYMENT),
        ("HorizontalPodAutoscaler", "digits"),
        ("NetworkPolicy", "digits"),
        ("PodDisruptionBudget", "digits"),
    ]
    refused_before = service(
        status={"conditions": [{"type": "Ready", "status": "False", "reason": "NameConflict"}]}
    )
    assert plan.plan(snapshot(refused_before), SETTINGS, NOW).create == ()  # check first
    svc = service()
    snap = settled(svc, plan.plan(snapshot(svc), SETTINGS, NOW))
    owned = {k: v for k, v in snap.owned.items() if k[0] != "Deployment"}
    missing = plan.plan(snapshot(svc, owned=owned), SETTINGS, NOW)
    assert f"Deployment/{DEPLOYMENT}" in kinds(missing.write) and missing.create == ()


def test_fields_a_create_left_under_an_update_entry_are_handed_over_before_a_change() -> None:
    svc = service()
    snap = settled(svc, plan.plan(snapshot(svc), SETTINGS, NOW))
    marked = copy.deepcopy(dict(snap.owned))
    mark = [{"manager": "conch", "operation": "Update"}]
    marked["Deployment", DEPLOYMENT]["metadata"]["managedFields"] = mark
    unchanged = plan.plan(
        snapshot(snap.service, owned=marked, deployments=snap.deployments), SETTINGS, NOW
    )
    assert (unchanged.hand_over, unchanged.write) == ((), ())  # the entry does no harm yet
    drifted = copy.deepcopy(marked)
    drifted["Deployment", DEPLOYMENT]["spec"]["template"]["spec"]["containers"][0]["image"] = "x"
    changed = plan.plan(
        snapshot(snap.service, owned=drifted, deployments=snap.deployments), SETTINGS, NOW
    )
    assert changed.hand_over == (("Deployment", DEPLOYMENT),)
    assert kinds(changed.write) == [f"Deployment/{DEPLOYMENT}"]


def test_nothing_changed_means_nothing_written() -> None:
    svc = service()
    first = plan.plan(snapshot(svc), SETTINGS, NOW)
    settled_once = settled(svc, first)
    second = plan.plan(settled_once, SETTINGS, NOW)
    assert second.write == () and second.delete == ()
    assert ready_reason(second) == ("True", reasons.AVAILABLE)
    third = plan.plan(settled(settled_once.service, second, settled_once), SETTINGS, NOW)
    assert (third.write, third.delete, third.status, third.events) == ((), (), None, ())
    assert third.requeue_after == 0


def test_drift_in_a_field_conch_sets_is_repaired_alone() -> None:
    svc = service()
    snap = settled(svc, plan.plan(snapshot(svc), SETTINGS, NOW))
    drifted = copy.deepcopy(dict(snap.owned))
    drifted["Deployment", DEPLOYMENT]["spec"]["template"]["spec"]["containers"][0]["image"] = "x"
    decided = plan.plan(
        snapshot(snap.service, owned=drifted, deployments=snap.deployments), SETTINGS, NOW
    )
    assert kinds(decided.write) == [f"Deployment/{DEPLOYMENT}"]
    assert not decided.dry_run  # the spec did not change and the object exists
    assert not decided.at_once


def test_a_removed_field_is_a_change() -> None:
    svc = service()
    snap = settled(svc, plan.plan(snapshot(svc), SETTINGS, NOW))
    without = service(autoscaling=None, replicas=3)
    decided = plan.plan(
        snapshot(without, owned=snap.owned, deployments=snap.deployments), SETTINGS, NOW
    )
    assert f"Deployment/{DEPLOYMENT}" in kinds(decided.write)
    assert kinds(decided.delete) == ["HorizontalPodAutoscaler/digits"]
    assert not decided.at_once  # children run: writes keep the plan's order


def test_a_missing_child_of_a_running_service_is_written_in_order() -> None:
    svc = service()
    snap = settled(svc, plan.plan(snapshot(svc), SETTINGS, NOW))
    owned = {k: v for k, v in snap.owned.items() if k[0] != "Service"}
    decided = plan.plan(snapshot(svc, owned=owned, deployments=snap.deployments), SETTINGS, NOW)
    assert kinds(decided.write) == ["Service/digits"]
    assert decided.dry_run and not decided.at_once


REFUSALS = [
    # (case, snapshot parts or spec, reason)
    ("policy", {"spec": {"triton": {"image": "evil.example/triton:1"}}}, reasons.POLICY_VIOLATION),
    ("no model version", {"versions": {}}, reasons.MODEL_VERSION_NOT_FOUND),
    (
        "broken model version",
        {"versions": {}, "broken": {"digits-v1": "bad"}},
        reasons.INVALID_SPEC,
    ),
    (
        "credentials not opted in",
        {
            "versions": {"digits-v1": version(secret="creds")},
            "secrets": {"creds": {"metadata": {"name": "creds"}}},
        },
        reasons.CREDENTIALS_NOT_ALLOWED,
    ),
    (
        "gateway without its CRDs",
        {"spec": {"rollout": {"router": "gatewayAPI", "gatewayRef": {"name": "gw"}}}},
        reasons.INVALID_SPEC,
    ),
]


@pytest.mark.parametrize(
    ("parts", "reason"), [c[1:] for c in REFUSALS], ids=[c[0] for c in REFUSALS]
)
def test_refusals_write_nothing_and_say_why(parts: dict[str, Any], reason: str) -> None:
    parts = dict(parts)
    svc = service(**parts.pop("spec", {}))
    decided = plan.plan(snapshot(svc, **parts), SETTINGS, NOW)
    assert (decided.write, decided.check, decided.delete) == ((), (), ())
    assert ready_reason(decided) == ("False", reason)
    assert decided.requeue_after == plan.REFUSED_POLL
    assert [e.reason for e in decided.events] == [reason]


def test_a_refused_spec_leaves_what_serves_serving() -> None:
    svc = service()
    snap = settled(svc, plan.plan(snapshot(svc), SETTINGS, NOW))
    decided = plan.plan(
        snapshot(snap.service, owned=snap.owned, deployments=snap.deployments, versions={}),
        SETTINGS,
        NOW,
    )
    assert decided.write == () and decided.delete == ()
    assert ready_reason(decided) == ("True", reasons.AVAILABLE)
    degraded = next(c for c in decided.status["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == reasons.MODEL_VERSION_NOT_FOUND


def test_a_made_up_stable_version_is_rebuilt_from_what_runs() -> None:
    svc = service()
    snap = settled(svc, plan.plan(snapshot(svc), SETTINGS, NOW))
    forged = service(status={"stable": {"version": "ghost"}, "phase": "Stable"})
    decided = plan.plan(
        snapshot(forged, owned=snap.owned, deployments=snap.deployments), SETTINGS, NOW
    )
    assert decided.events[0].reason == reasons.STATUS_REBUILT
    assert decided.delete == ()
    assert decided.status is not None and decided.status["stable"]["version"] == "digits-v1"


def test_a_consumed_abort_is_acknowledged() -> None:
    svc = service()
    snap = settled(svc, plan.plan(snapshot(svc), SETTINGS, NOW))
    decided = plan.plan(
        snapshot(
            snap.service,
            owned=snap.owned,
            deployments=snap.deployments,
            annotations={plan.ABORT_ANNOTATION: ""},
        ),
        SETTINGS,
        NOW,
    )
    assert decided.acknowledge == (plan.ABORT_ANNOTATION,)


def test_pure_code_that_chokes_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: object) -> list[str]:
        raise RuntimeError("boom")

    monkeypatch.setattr(plan.policy, "violations", boom)
    decided = plan.plan(snapshot(service()), SETTINGS, NOW)
    assert ready_reason(decided) == ("False", reasons.INVALID_SPEC)
    assert "boom" in decided.status["conditions"][0]["message"]


def test_gpu_and_capabilities_reach_the_plan() -> None:
    decided = plan.plan(
        snapshot(service(), capabilities=Capabilities(service_monitor=True)), SETTINGS, NOW
    )
    assert "ServiceMonitor/digits" in kinds(decided.write)


def test_a_canary_without_a_metrics_source_does_not_start_and_says_so_once() -> None:
    svc = service()
    snap = settled(svc, plan.plan(snapshot(svc), SETTINGS, NOW))
    spec = snap.service.spec.model_copy(update={"model_version": "digits-v2"})
    rolling = snap.service.model_copy(update={"spec": spec})
    parts = {
        "owned": snap.owned,
        "deployments": snap.deployments,
        "versions": {"digits-v1": version(), "digits-v2": version("digits-v2")},
        "metrics_available": False,
    }
    decided = plan.plan(snapshot(rolling, **parts), SETTINGS, NOW)
    assert not any(
        o["kind"] == "Deployment" and "digits-v2" in o["metadata"]["name"] for o in decided.write
    )
    assert [e.reason for e in decided.events if e.type == "Warning"] == [reasons.NO_METRICS_SOURCE]
    later = settled(rolling, decided, snapshot(rolling, **parts))
    again = plan.plan(snapshot(later.service, **{**parts, "owned": later.owned}), SETTINGS, NOW)
    assert reasons.NO_METRICS_SOURCE not in [e.reason for e in again.events]


def mid_rollout(weight_step: int, hpa_wants: int, router: str = "replicas") -> plan.Snapshot:
    """digits-v1 -> digits-v2 held at step `weight_step` of 10%/50% (its canary ready, its
    pause running), with the HPA asking for `hpa_wants` replicas in all."""
    rollout: dict[str, Any] = {"steps": [{"weight": 10}, {"weight": 50, "pause": "1h"}]}
    if router == "gatewayAPI":
        rollout |= {"router": "gatewayAPI", "gatewayRef": {"name": "gw"}}
    started = (NOW - dt.timedelta(minutes=1)).isoformat()
    status = {
        "phase": "Progressing",
        "stable": {"version": "digits-v1"},
        "canary": {"version": "digits-v2"},
        "step": weight_step,
        "stepStartedAt": started,
        "rolloutStartedAt": started,
        "progressedAt": started,
        "observedGeneration": 1,
    }
    autoscaling = {"minReplicas": 2, "maxReplicas": 8, "replicas": hpa_wants, "target": 70}
    svc = service(status, modelVersion="digits-v2", autoscaling=autoscaling, rollout=rollout)
    live = {
        v: {"status": {"replicas": 2, "readyReplicas": 2}, "spec": {"replicas": 2}}
        for v in ("digits-v1", "digits-v2")
    }
    return snapshot(
        svc,
        deployments=live,
        versions={"digits-v1": version(), "digits-v2": version("digits-v2")},
        capabilities=Capabilities(http_route=True),
        samples=None,
    )


@pytest.mark.parametrize(
    ("router", "step", "hpa_wants", "stable", "canary"),
    [
        # replicas router: the HPA's count split by the step's weight (weights.replica_split)
        ("replicas", 1, 4, 2, 2),
        ("replicas", 1, 8, 4, 4),
        ("replicas", 1, 5, 3, 3),
        ("replicas", 0, 8, 8, 1),
        ("replicas", 1, 1, 1, 1),  # below minReplicas 2: kept at 2
        ("replicas", 1, 20, 4, 4),  # above maxReplicas 8: kept at 8
        # gatewayAPI: the route carries the weight; stable keeps the full count beside the
        # canary's share (weights.gateway_split), both following the HPA
        ("gatewayAPI", 1, 4, 4, 2),
        ("gatewayAPI", 1, 8, 8, 4),
        ("gatewayAPI", 0, 6, 6, 1),
    ],
)
def test_both_versions_follow_the_autoscaler_through_a_rollout(
    router: str, step: int, hpa_wants: int, stable: int, canary: int
) -> None:
    decided = plan.plan(mid_rollout(step, hpa_wants, router), SETTINGS, NOW)
    replicas = {
        o["metadata"]["labels"][VERSION_LABEL]: o["spec"]["replicas"]
        for o in decided.check
        if o["kind"] == "Deployment"
    }
    assert replicas == {"digits-v1": stable, "digits-v2": canary}
    (hpa,) = [o for o in decided.check if o["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "serving.conch.dev/v1alpha1",
        "kind": "ModelService",
        "name": "digits",
    }
    assert decided.status is not None
    assert decided.status["replicas"] == 4  # the pods both Deployments run now
    assert decided.status["selector"] == "serving.conch.dev/service=digits"


USES = [
    # (case, spec.modelVersion, status, versions used)
    ("new", "v2", None, {"v2"}),
    ("stable", "v2", {"stable": {"version": "v1", "readyReplicas": 1}}, {"v1", "v2"}),
    (
        "canary under way",
        "v2",
        {"stable": {"version": "v1"}, "canary": {"version": "v2"}, "phase": "Progressing"},
        {"v1", "v2"},
    ),
    (
        "rolled back: the canary is no longer run",
        "v2",
        {"stable": {"version": "v1"}, "canary": {"version": "v3"}, "phase": "RolledBack"},
        {"v1", "v2"},
    ),
    ("a status that is not ours to trust", "v2", {"stable": "v9", "canary": 3}, {"v2"}),
]


@pytest.mark.parametrize(
    ("model_version", "recorded", "used"),
    [pytest.param(m, r, u, id=case) for case, m, r, u in USES],
)
def test_what_is_kept_of_a_service_says_which_versions_it_uses(
    model_version: str, recorded: dict[str, Any] | None, used: set[str]
) -> None:
    raw = {
        "metadata": {"name": "a", "namespace": "ns", "uid": "u", "labels": {"x": "y"}},
        "spec": {"modelVersion": model_version, "resources": {"gpus": 1}},
        **({"status": recorded} if recorded is not None else {}),
    }
    assert plan.uses(raw) == used  # never fails, whatever status holds


@pytest.mark.parametrize(
    ("generation", "recorded", "ahead"),
    [
        pytest.param(1, None, True, id="new"),
        pytest.param(2, {"observedGeneration": 1}, True, id="spec changed"),
        pytest.param(2, {"observedGeneration": 2, "phase": "Stable"}, False, id="acted on"),
    ],
)
def test_a_spec_not_acted_on_yet_is_ahead(
    generation: int, recorded: dict[str, Any] | None, ahead: bool
) -> None:
    raw = {
        "metadata": {"name": "a", "namespace": "ns", "generation": generation},
        "spec": {"modelVersion": "v1"},
        **({"status": recorded} if recorded is not None else {}),
    }
    assert plan.spec_ahead(raw) is ahead
    assert plan.spec_ahead(None) is False  # deleted


def test_only_a_version_change_plans_read_requeues_its_users() -> None:
    mv = {"metadata": {"name": "v1", "uid": "u", "generation": 1}, "spec": {"model": "m"}}
    used = {**mv, "status": {"usedBy": ["a", "b"]}}
    assert plan.version_matters(None, mv) and plan.version_matters(mv, None)
    assert not plan.version_matters(mv, used)  # status only: usedBy grew
    deleting = {**used, "metadata": {**mv["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z"}}
    assert plan.version_matters(used, deleting)
    recreated = {**mv, "metadata": {**mv["metadata"], "uid": "other"}}
    assert plan.version_matters(mv, recreated)


def _deployment(replicas: int, ready: int, progressed: str | None) -> dict[str, Any]:
    conditions = (
        [{"type": "Progressing", "status": "True", "lastUpdateTime": progressed}]
        if progressed
        else []
    )
    return {
        "metadata": {"name": "d", "creationTimestamp": "2026-12-02T11:59:58Z"},
        "status": {"replicas": replicas, "readyReplicas": ready, "conditions": conditions},
    }


@pytest.mark.parametrize(
    ("deployment", "read"),
    [
        pytest.param(_deployment(2, 2, "2026-12-02T11:00:00Z"), False, id="all ready"),
        pytest.param(_deployment(1, 0, "2026-12-02T11:59:59Z"), False, id="pods starting"),
        pytest.param(_deployment(1, 0, None), False, id="new: not reported yet"),
        pytest.param(_deployment(1, 0, "2026-12-02T11:59:50Z"), True, id="stuck for 10 s"),
        pytest.param(_deployment(3, 2, "2026-12-02T11:30:00Z"), True, id="one pod stuck"),
        pytest.param(_deployment(1, 0, "not a time"), True, id="unreadable: look"),
    ],
)
def test_pods_are_read_only_once_a_deployment_stops_progressing(
    deployment: dict[str, Any], read: bool
) -> None:
    assert plan.pods_worth_reading(deployment, NOW) is read


@pytest.mark.parametrize(
    ("status", "reported"),
    [
        pytest.param(None, False, id="no status"),
        pytest.param({"conditions": "garbage"}, False, id="conditions not a list"),
        pytest.param(
            {"conditions": [{"type": "Ready", "reason": "InvalidSpec", "message": "bad"}]},
            True,
            id="already reported",
        ),
        pytest.param(
            {"conditions": [{"type": "Ready", "reason": "InvalidSpec", "message": "other"}]},
            False,
            id="another message",
        ),
        pytest.param(
            {"conditions": [{"type": "Ready", "reason": "Available", "message": "bad"}]},
            False,
            id="another reason",
        ),
        pytest.param({"conditions": ["Ready", 3]}, False, id="not conditions at all"),
    ],
)
def test_an_invalid_spec_already_reported_is_not_written_again(
    status: dict[str, Any] | None, reported: bool
) -> None:
    """A ModelService that does not parse gets its InvalidSpec written once: each write would
    bring the next reconcile, and a new lastTransitionTime the next write."""
    raw = {"metadata": {"name": "a", "namespace": "ns"}, "status": status}
    assert plan.reported_invalid(raw, "bad") is reported


def test_a_long_invalid_spec_message_is_compared_as_written() -> None:
    message = "x" * 40000
    recorded = {"type": "Ready", "reason": "InvalidSpec", "message": message[:32768]}
    raw = {"metadata": {"name": "a"}, "status": {"conditions": [recorded]}}
    assert plan.reported_invalid(raw, message)
