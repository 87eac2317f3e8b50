"""The endpoint key in the pod: Triton's flags name a variable, the variable a Secret."""

from __future__ import annotations

from typing import Any

from conch import endpointkey, tritonargs
from conch.api import ModelService, ModelVersion
from conch.builders import PodSettings, deployment
from tests.unit.test_builders import example


def build(access: dict[str, Any] | None, key_version: str | None = None) -> dict[str, Any]:
    raw = example("modelservice.yaml")
    raw["metadata"] |= {"namespace": "team-a", "uid": "u-1"}
    if access is not None:
        raw["spec"]["access"] = access
    mv_raw = example("modelversion.yaml")
    mv_raw["metadata"]["namespace"] = "team-a"
    svc, mv = ModelService.model_validate(raw), ModelVersion.model_validate(mv_raw)
    return deployment.build(svc, mv, PodSettings(), 1, (), key_version)


def triton(obj: dict[str, Any]) -> dict[str, Any]:
    (container,) = obj["spec"]["template"]["spec"]["containers"]
    return dict(container)


def test_without_a_key_nothing_is_restricted() -> None:
    container = triton(build({"allowedNamespaces": ["team-b"]}))
    assert not [a for a in container["args"] if "restricted" in a]
    assert all(e["name"] != endpointkey.ENV for e in container["env"])


def test_key_reaches_triton_through_the_environment_only() -> None:
    obj = build({"keySecretRef": {"name": "digits-key"}}, key_version="42")
    container = triton(obj)
    assert {
        "name": "CONCH_ENDPOINT_KEY",
        "valueFrom": {"secretKeyRef": {"name": "digits-key", "key": "key"}},
    } in container["env"]
    restricted = {
        a.name: a.value
        for a in tritonargs.parse(container["args"][1:])
        if a.name in ("http-restricted-api", "grpc-restricted-protocol")
    }
    groups = (
        "inference,metadata,model-config,model-repository,shared-memory,statistics,trace,logging"
    )
    assert restricted == {
        "http-restricted-api": f"{groups}:conch-endpoint-key=$(CONCH_ENDPOINT_KEY)",
        "grpc-restricted-protocol": f"{groups}:conch-endpoint-key=$(CONCH_ENDPOINT_KEY)",
    }
    assert "health" not in groups.split(",")  # kubelet's probes carry no key
    annotations = obj["spec"]["template"]["metadata"]["annotations"]
    assert annotations[endpointkey.VERSION_ANNOTATION] == "42"


def test_a_rotated_key_changes_the_pod_template() -> None:
    ref = {"keySecretRef": {"name": "digits-key"}}
    before, after = build(ref, "41")["spec"]["template"], build(ref, "42")["spec"]["template"]
    assert before != after  # the Deployment controller rolls the pods onto the new value
    assert before["spec"] == after["spec"]
