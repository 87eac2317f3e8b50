"""Endpoint keys: the gate in the pod, a Secret per consumer, the gate's hashes. Pure."""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
from typing import Any

import pytest

from conch import endpointkey, plan, policy, tritonargs
from conch.api import ModelService, ModelVersion
from conch.builders import PodSettings, deployment
from conch.builders.meta import controlled_by
from conch.errors import NameConflict
from tests.unit.test_builders import example
from tests.unit.test_plan import NOW, SETTINGS, service, settled, snapshot

FRESH = {"app-a": "fresh-a", "app-b": "fresh-b", "app-c": "fresh-c"}


def build(access: dict[str, Any] | None) -> dict[str, Any]:
    raw = example("modelservice.yaml")
    raw["metadata"] |= {"namespace": "team-a", "uid": "u-1"}
    if access is not None:
        raw["spec"]["access"] = access
    mv_raw = example("modelversion.yaml")
    mv_raw["metadata"]["namespace"] = "team-a"
    svc, mv = ModelService.model_validate(raw), ModelVersion.model_validate(mv_raw)
    return deployment.build(svc, mv, PodSettings(runtime_image="runtime:1"), 1)


def containers(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in obj["spec"]["template"]["spec"]["containers"]}


def flags(container: dict[str, Any]) -> dict[str, str | None]:
    return {a.name: a.value for a in tritonargs.parse(container["args"][1:]) if a.name}


@pytest.mark.parametrize("access", [None, {"allowedNamespaces": ["team-b"]}])
def test_without_consumers_or_a_key_there_is_no_gate(access: dict[str, Any] | None) -> None:
    pod = containers(build(access))
    assert list(pod) == ["triton"]
    assert flags(pod["triton"])["http-port"] == "8000"
    assert "http-address" not in flags(pod["triton"])
    assert {p["name"] for p in pod["triton"]["ports"]} == {"http", "grpc", "metrics"}


@pytest.mark.parametrize(
    "access",
    [
        {"consumers": [{"name": "app-a"}]},
        {"consumers": []},
        {"keySecretRef": {"name": "owner-key"}},
    ],
)
def test_the_gate_takes_the_ports_and_triton_listens_on_loopback(access: dict[str, Any]) -> None:
    obj = build(access)
    pod = containers(obj)
    triton, gate = pod["triton"], pod["gate"]
    assert {k: v for k, v in flags(triton).items() if k.endswith(("address", "-port"))} == {
        "http-address": "127.0.0.1",
        "http-port": "18000",
        "grpc-address": "127.0.0.1",
        "grpc-port": "18001",
        "metrics-address": "0.0.0.0",
        "metrics-port": "8002",
    }
    assert not [a for a in triton["args"] if "restricted" in a]  # the gate holds the keys
    assert [p["name"] for p in triton["ports"]] == ["metrics"]
    assert [(p["name"], p["containerPort"]) for p in gate["ports"]] == [
        ("http", 8000),
        ("grpc", 8001),
    ]
    assert triton["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8000}
    assert gate["command"] == ["/usr/local/bin/conch-gate"]
    assert gate["image"] == "runtime:1"
    assert gate["securityContext"]["readOnlyRootFilesystem"] is True
    assert gate["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    volumes = {v["name"]: v for v in obj["spec"]["template"]["spec"]["volumes"]}
    gate_secret = endpointkey.gate_secret_name("digits")
    assert volumes["gate-keys"]["secret"]["secretName"] == gate_secret
    assert "--hashes=/var/run/secrets/conch/gate/hashes.json" in gate["args"]
    assert endpointkey.mentions_gate(obj, "digits")


def test_an_owner_key_is_mounted_for_the_gate_never_put_in_the_spec() -> None:
    obj = build({"keySecretRef": {"name": "owner-key"}})
    gate = containers(obj)["gate"]
    volumes = {v["name"]: v for v in obj["spec"]["template"]["spec"]["volumes"]}
    assert volumes["owner-key"]["secret"]["secretName"] == "owner-key"
    assert volumes["owner-key"]["secret"]["items"] == [{"key": "key", "path": "key"}]
    assert "--key-file=/var/run/secrets/conch/owner-key/key" in gate["args"]
    assert "env" not in gate


def test_the_tenant_cannot_move_triton_off_loopback() -> None:
    spec = service(triton={"extraArgs": ["--grpc-address=0.0.0.0"]}).spec
    (found,) = policy.violations(spec, policy.PodPolicy(allowed_triton_flags=("*",)))
    assert "which Conch manages" in found


# -- the key plan ----------------------------------------------------------------------


def svc(consumers: list[str] | None, **access: Any) -> ModelService:
    if consumers is not None:
        access["consumers"] = [{"name": c} for c in consumers]
    return service(access=access or None)


def hashes(secret: dict[str, Any]) -> dict[str, str]:
    body = base64.b64decode(secret["data"][endpointkey.HASHES_KEY])
    return dict(json.loads(body)["consumers"])


def key_of(secret: dict[str, Any]) -> str:
    return base64.b64decode(secret["data"]["key"]).decode()


def held(secret: dict[str, Any]) -> dict[str, Any]:
    """`secret` as the API server holds it."""
    out = copy.deepcopy(secret)
    out["metadata"] |= {"uid": "secret-uid", "resourceVersion": "3"}
    return out


def test_each_consumer_gets_a_key_and_the_gate_only_hashes() -> None:
    service_ = svc(["app-a", "app-b"])
    keys = endpointkey.plan(service_, None, FRESH, set())
    assert [s["metadata"]["labels"][endpointkey.CONSUMER_LABEL] for s in keys.issue] == [
        "app-a",
        "app-b",
    ]
    assert [key_of(s) for s in keys.issue] == ["fresh-a", "fresh-b"]
    assert all(controlled_by(s, "uid-1") for s in keys.issue)
    assert keys.gate is not None
    assert hashes(keys.gate) == {
        "app-a": endpointkey.digest("fresh-a"),
        "app-b": endpointkey.digest("fresh-b"),
    }
    assert "fresh-a" not in json.dumps(keys.gate)  # hashes, never keys
    names = {s["metadata"]["name"] for s in keys.issue}
    assert names == {endpointkey.key_secret_name("digits", c) for c in ("app-a", "app-b")}


def test_issued_keys_are_kept_and_nothing_is_written_again() -> None:
    service_ = svc(["app-a"])
    first = endpointkey.plan(service_, None, FRESH, set())
    assert first.gate is not None
    again = endpointkey.plan(service_, held(first.gate), {"app-a": "other"}, set())
    assert again.empty


def test_a_removed_consumer_is_revoked_and_a_new_one_issued() -> None:
    first = endpointkey.plan(svc(["app-a", "app-b"]), None, FRESH, set())
    assert first.gate is not None
    keys = endpointkey.plan(svc(["app-a", "app-c"]), held(first.gate), FRESH, set())
    assert keys.revoke == ("app-b",)
    assert keys.revoked_secrets() == [endpointkey.key_secret_name("digits", "app-b")]
    assert [key_of(s) for s in keys.issue] == ["fresh-c"]
    assert keys.gate is not None
    assert hashes(keys.gate) == {
        "app-a": endpointkey.digest("fresh-a"),  # untouched
        "app-c": endpointkey.digest("fresh-c"),
    }


@pytest.mark.parametrize(("request_", "renewed"), [("app-a", ["app-a"]), ("*", ["app-a", "app-b"])])
def test_rotation_replaces_the_named_keys(request_: str, renewed: list[str]) -> None:
    first = endpointkey.plan(svc(["app-a", "app-b"]), None, {"app-a": "1", "app-b": "2"}, set())
    assert first.gate is not None
    rotate = endpointkey.requested({endpointkey.ROTATE_ANNOTATION: request_})
    keys = endpointkey.plan(svc(["app-a", "app-b"]), held(first.gate), FRESH, rotate)
    assert keys.rotated == tuple(renewed)
    assert keys.gate is not None
    assert {c for c, h in hashes(keys.gate).items() if h == endpointkey.digest(FRESH[c])} == set(
        renewed
    )


def test_without_the_gate_every_issued_key_goes() -> None:
    first = endpointkey.plan(svc(["app-a"]), None, FRESH, set())
    assert first.gate is not None
    keys = endpointkey.plan(svc(None, allowedNamespaces=["x"]), held(first.gate), {}, set())
    assert keys.revoke == ("app-a",)
    assert keys.delete_gate


def test_a_gate_secret_held_by_someone_else_is_a_name_conflict() -> None:
    theirs = {"metadata": {"name": endpointkey.gate_secret_name("digits"), "uid": "x"}}
    with pytest.raises(NameConflict):
        endpointkey.plan(svc(["app-a"]), theirs, FRESH, set())


def test_names_never_meet() -> None:
    assert endpointkey.key_secret_name("a", "key-b-c") != endpointkey.key_secret_name(
        "a-key-b", "c"
    )
    assert endpointkey.gate_secret_name("a") not in {
        endpointkey.key_secret_name("a", c) for c in ("gate", "key-gate")
    }


# -- in the reconcile plan ---------------------------------------------------------------


def test_the_plan_issues_acknowledges_a_rotation_and_says_so() -> None:
    service_ = svc(["app-a"])
    first = plan.plan(snapshot(service_, fresh_keys=FRESH), SETTINGS, NOW)
    assert [key_of(s) for s in first.keys.issue] == ["fresh-a"]
    assert ("Normal", "KeyIssued") in [(e.type, e.reason) for e in first.events]
    assert first.keys.gate is not None
    after = dataclasses.replace(
        settled(service_, first),
        gate=held(first.keys.gate),
        fresh_keys=FRESH,
        annotations={endpointkey.ROTATE_ANNOTATION: "app-a"},
    )
    rotated = plan.plan(after, SETTINGS, NOW)
    assert [e.reason for e in rotated.events if e.reason.startswith("Key")] == ["KeyRotated"]
    assert endpointkey.ROTATE_ANNOTATION in rotated.acknowledge
    assert "fresh-a" not in str(rotated.events)


def test_a_refused_spec_still_revokes() -> None:
    first = endpointkey.plan(svc(["app-a", "app-b"]), None, FRESH, set())
    assert first.gate is not None
    refused = svc(["app-a"])
    snap = snapshot(refused, versions={}, gate=held(first.gate), fresh_keys=FRESH)
    decided = plan.plan(snap, SETTINGS, NOW)
    assert decided.status is not None and not decided.write  # ModelVersionNotFound
    assert decided.keys.revoke == ("app-b",)
    assert decided.keys.gate is not None
    assert set(hashes(decided.keys.gate)) == {"app-a"}
    assert not decided.keys.issue


def test_a_refused_new_service_is_issued_nothing() -> None:
    snap = snapshot(svc(["app-a"]), versions={}, fresh_keys=FRESH)
    decided = plan.plan(snap, SETTINGS, NOW)
    assert decided.status is not None and not decided.write
    assert decided.keys.empty


def test_conch_keys_rotate_asks_with_the_annotation_the_plan_reads() -> None:
    from conch import keys_cli

    patch = keys_cli.request(["app-b", "app-a", "app-a"])
    annotations = patch["metadata"]["annotations"]
    assert annotations == {endpointkey.ROTATE_ANNOTATION: "app-a,app-b"}
    assert endpointkey.requested(annotations) == {"app-a", "app-b"}
    assert endpointkey.requested(keys_cli.request(["*"])["metadata"]["annotations"]) == {"*"}
