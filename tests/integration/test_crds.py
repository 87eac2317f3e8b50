"""The CRDs on a real kube-apiserver: established, explained, and enforcing the API's rules."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.support import eventually

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("crds")]

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION = "serving.conch.dev", "v1alpha1"
PLURALS = {"ModelVersion": "modelversions", "ModelService": "modelservices"}


def example(kind: str) -> dict[str, Any]:
    name = {"ModelVersion": "modelversion.yaml", "ModelService": "modelservice.yaml"}[kind]
    return dict(yaml.safe_load((ROOT / "examples" / name).read_text()))


def create(api: client.ApiClient, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    return dict(
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURALS[body["kind"]], body
        )
    )


def rejection(call: Callable[[], object]) -> str:
    with pytest.raises(ApiException) as caught:
        call()
    assert caught.value.status == 422, caught.value.body
    return str(json.loads(caught.value.body)["message"])


def test_crds_are_established_with_printer_columns(kubectl: Callable[..., str]) -> None:
    out = json.loads(kubectl("get", "crd", "modelservices.serving.conch.dev", "-o", "json"))
    version = out["spec"]["versions"][0]
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Version",
        "Stable",
        "Canary",
        "Weight",
        "Ready",
        "Phase",
        "Reason",  # -o wide from here
        "Model-Namespace",
        "Callers",
        "Age",
    ]
    assert out["spec"]["names"]["shortNames"] == ["msvc"]
    established = {c["type"]: c["status"] for c in out["status"]["conditions"]}
    assert established["Established"] == "True"
    assert established["NamesAccepted"] == "True"


def test_kubectl_explain_shows_descriptions(kubectl: Callable[..., str]) -> None:
    def explain() -> str | None:
        try:
            return kubectl("explain", "modelservice.spec.rollout")
        except RuntimeError:
            return None  # the OpenAPI document is published a moment after Established

    text = eventually(explain, what="kubectl explain")
    assert "How a change of spec.modelVersion reaches users" in text
    assert "maxExtraGPUs" in text
    analysis = kubectl("explain", "msvc.spec.rollout.analysis.maxErrorRate")
    assert "Highest share of failed inferences" in analysis


def test_examples_are_accepted(api: client.ApiClient, namespace: str) -> None:
    mv = create(api, namespace, example("ModelVersion"))
    assert mv["spec"]["source"]["sha256"] == example("ModelVersion")["spec"]["source"]["sha256"]
    svc = create(api, namespace, example("ModelService"))
    # Defaults written down in the models are applied by the API server.
    assert svc["spec"]["rollout"]["strategy"] == "Canary"
    assert svc["spec"]["rollout"]["analysis"]["failureLimit"] == 2
    assert svc["spec"]["triton"]["instanceCount"] == 1


def _mv(mutate: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    body = copy.deepcopy(example("ModelVersion"))
    mutate(body["spec"])
    return body


def _svc(mutate: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    body = copy.deepcopy(example("ModelService"))
    mutate(body["spec"])
    return body


def _named(body: dict[str, Any], name: str) -> dict[str, Any]:
    return {**body, "metadata": {**body["metadata"], "name": name}}


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(spec: dict[str, Any]) -> None:
        node = spec
        *parents, leaf = path.split(".")
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if isinstance(node, list):
            node[int(leaf)] = value
        else:
            node[leaf] = value

    return mutate


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(spec: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = spec
        for part in parents:
            node = node[part]
        del node[leaf]

    return mutate


# (case, body, field named in the error, words of the message)
INVALID_AT_CREATE = [
    ("short sha256", _mv(_set("source.sha256", "abc123")), "spec.source.sha256", "64 lowercase"),
    (
        "uppercase sha256",
        _mv(_set("source.sha256", "A" * 64)),
        "spec.source.sha256",
        "64 lowercase",
    ),
    (
        "unknown uri scheme",
        _mv(_set("source.uri", "ftp://host/model.tar")),
        "spec.source.uri",
        "pvc://CLAIM/PATH",
    ),
    (
        "pvc uri without path",
        _mv(_set("source.uri", "pvc://models")),
        "spec.source.uri",
        "pvc://CLAIM/PATH",
    ),
    (
        "dot-dot in uri",
        _mv(_set("source.uri", "pvc://models/a/../../etc")),
        "spec.source.uri",
        "'..'",
    ),
    ("unknown format", _mv(_set("format", "tensorflow")), "spec.format", "Unsupported value"),
    ("no inputs", _mv(_set("signature.inputs", [])), "spec.signature.inputs", "at least 1"),
    (
        "duplicate input names",
        _mv(
            _set(
                "signature.inputs",
                [
                    {"name": "x", "dataType": "TYPE_FP32", "dims": [4]},
                    {"name": "x", "dataType": "TYPE_INT64", "dims": [1]},
                ],
            )
        ),
        "spec.signature.inputs[1]",
        "Duplicate value",
    ),
    (
        "zero dimension",
        _mv(_set("signature.outputs.0.dims", [0])),
        "spec.signature.outputs[0].dims",
        "positive, or -1",
    ),
    (
        "unknown data type",
        _mv(_set("signature.inputs.0.dataType", "FLOAT")),
        "spec.signature.inputs[0].dataType",
        "Unsupported value",
    ),
    (
        "accuracy without baseline",
        _mv(_drop("compression.baselineAccuracy")),
        "spec.compression.baselineAccuracy",
        "needs baselineAccuracy",
    ),
    (
        "accuracy above 1",
        _mv(_set("compression.accuracy", 97.2)),
        "spec.compression.accuracy",
        "less than or equal to 1",
    ),
    (
        "weights not increasing",
        _svc(_set("rollout.steps", [{"weight": 50}, {"weight": 20}])),
        "spec.rollout.steps",
        "strictly increasing",
    ),
    (
        "repeated weight",
        _svc(_set("rollout.steps", [{"weight": 20}, {"weight": 20}])),
        "spec.rollout.steps",
        "strictly increasing",
    ),
    (
        "weight zero",
        _svc(_set("rollout.steps", [{"weight": 0}])),
        "spec.rollout.steps[0].weight",
        "greater than or equal to 1",
    ),
    (
        "weight above 100",
        _svc(_set("rollout.steps", [{"weight": 101}])),
        "spec.rollout.steps[0].weight",
        "less than or equal to 100",
    ),
    (
        "min above max replicas",
        _svc(_set("autoscaling.minReplicas", 5)),
        "spec.autoscaling.minReplicas",
        "must not exceed maxReplicas",
    ),
    (
        "replicas and autoscaling",
        _svc(_set("replicas", 3)),
        "spec.replicas",
        "replicas or autoscaling, not both",
    ),
    (
        "product and MIG",
        _svc(_set("resources.migProfile", "1g.5gb")),
        "spec.resources.migProfile",
        "not both",
    ),
    (
        "bad MIG profile",
        _svc(_set("resources", {"gpus": 1, "migProfile": "big"})),
        "spec.resources.migProfile",
        "such as 1g.10gb",
    ),
    (
        "MIG without GPUs",
        _svc(_set("resources", {"gpus": 0, "migProfile": "1g.5gb"})),
        "spec.resources.gpus",
        "gpus of at least 1",
    ),
    (
        "negative GPUs",
        _svc(_set("resources.gpus", -1)),
        "spec.resources.gpus",
        "greater than or equal to 0",
    ),
    (
        "managed triton flag",
        _svc(_set("triton.extraArgs", ["--model-repository=/tmp"])),
        "spec.triton.extraArgs",
        "Conch manages them",
    ),
    (
        "gateway router without gateway",
        _svc(_set("rollout.router", "gatewayAPI")),
        "spec.rollout.gatewayRef",
        "needs gatewayRef",
    ),
    (
        "unparseable interval",
        _svc(_set("rollout.analysis.interval", "5 minutes")),
        "spec.rollout.analysis.interval",
        "a duration from 1s to 24h",
    ),
    (
        "error rate above 1",
        _svc(_set("rollout.analysis.maxErrorRate", 1.5)),
        "spec.rollout.analysis.maxErrorRate",
        "less than or equal to 1",
    ),
    (
        "bad model version name",
        _svc(_set("modelVersion", "Digits_V1")),
        "spec.modelVersion",
        "should match",
    ),
    ("missing model version", _svc(_drop("modelVersion")), "spec.modelVersion", "Required value"),
    (
        "service name with a dot (it names a Service)",
        _named(_svc(lambda s: None), "digits.v1"),
        "ModelService",
        "starts with a letter",
    ),
    (
        "service name starting with a digit",
        _named(_svc(lambda s: None), "1digits"),
        "ModelService",
        "starts with a letter",
    ),
    (
        "version name too long for a label",
        _named(_mv(lambda s: None), "d" * 64),
        "ModelVersion",
        "label value",
    ),
    (
        "served version name too long for a label",
        _svc(_set("modelVersion", "d" * 64)),
        "spec.modelVersion",
        "may not be more than 63",
    ),
    ("memory in GB", _svc(_set("resources.memory", "8GB")), "spec.resources.memory", "8Gi"),
    (
        "negative memory",
        _svc(_set("resources.memory", "-1Gi")),
        "spec.resources.memory",
        "positive",
    ),
    ("zero cpu", _svc(_set("resources.cpu", 0)), "spec.resources.cpu", "positive"),
    (
        "cpu target with a percent sign",
        _svc(_set("autoscaling", {"maxReplicas": 3, "metric": "cpu", "target": "70%"})),
        "spec.autoscaling.target",
        "no % sign",
    ),
    (
        "fractional cpu target",
        _svc(_set("autoscaling", {"maxReplicas": 3, "metric": "cpu", "target": "0.5"})),
        "spec.autoscaling.target",
        "whole percentage",
    ),
    (
        "queue time with a unit",
        _svc(_set("autoscaling", {"maxReplicas": 3, "metric": "queueTime", "target": "500us"})),
        "spec.autoscaling.target",
        "plain number of microseconds",
    ),
    (
        "absurd interval",
        _svc(_set("rollout.analysis.interval", "9999h")),
        "spec.rollout.analysis.interval",
        "from 1s to 24h",
    ),
    (
        "zero pause",
        _svc(_set("rollout.steps", [{"weight": 10, "pause": "0s"}])),
        "spec.rollout.steps[0].pause",
        "from 1s to 24h",
    ),
    (
        "toleration without key or Exists",
        _svc(_set("scheduling", {"tolerations": [{"operator": "Equal", "value": "x"}]})),
        "spec.scheduling.tolerations[0].operator",
        "must have operator Exists",
    ),
    (
        "toleration key the Pod API refuses",
        _svc(_set("scheduling", {"tolerations": [{"key": "bad key!", "operator": "Exists"}]})),
        "spec.scheduling.tolerations[0].key",
        "label key",
    ),
    (
        "toleration seconds without NoExecute",
        _svc(
            _set(
                "scheduling",
                {"tolerations": [{"key": "a", "operator": "Exists", "tolerationSeconds": 5}]},
            )
        ),
        "spec.scheduling.tolerations[0].tolerationSeconds",
        "needs effect NoExecute",
    ),
    (
        "node selector key the Pod API refuses",
        _svc(_set("scheduling", {"nodeSelector": {"-bad-/x": "y"}})),
        "spec.scheduling.nodeSelector",
        "label keys",
    ),
    (
        "node selector value too long",
        _svc(_set("scheduling", {"nodeSelector": {"zone": "a b"}})),
        "spec.scheduling.nodeSelector",
        "label values",
    ),
    (
        "credentials in the uri",
        _mv(_set("source.uri", "https://user:pw@models.example.com/d.tar")),
        "spec.source.uri",
        "must not carry credentials",
    ),
    (
        "uri message echoes the value",
        _mv(_set("source.uri", "ftp://host/model.tar")),
        "spec.source.uri",
        "got ftp://host/model.tar",
    ),
    (
        "sha256 with its prefix",
        _mv(_set("source.sha256", "sha256:" + "a" * 64)),
        "spec.source.sha256",
        "drop the sha256: prefix",
    ),
    (
        "unknown router",
        _svc(_set("rollout.router", "istio")),
        "spec.rollout.router",
        "Unsupported value",
    ),
]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [pytest.param(body, field, words, id=case) for case, body, field, words in INVALID_AT_CREATE],
)
def test_invalid_objects_are_rejected_naming_the_field(
    api: client.ApiClient, namespace: str, body: dict[str, Any], field: str, words: str
) -> None:
    message = rejection(lambda: create(api, namespace, body))
    assert field in message, message
    assert words in message, message


def test_model_version_spec_is_immutable(api: client.ApiClient, namespace: str) -> None:
    mv = create(api, namespace, example("ModelVersion"))
    objects = client.CustomObjectsApi(api)
    patch = {"spec": {"source": {"uri": "https://models.example.com/other.tar"}}}
    message = rejection(
        lambda: objects.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "modelversions", mv["metadata"]["name"], patch
        )
    )
    assert "spec: Invalid value" in message, message
    assert "spec is immutable" in message, message


def test_model_service_update_is_validated(api: client.ApiClient, namespace: str) -> None:
    svc = create(api, namespace, example("ModelService"))
    objects = client.CustomObjectsApi(api)
    patch = {"spec": {"autoscaling": {"minReplicas": 9}}}
    message = rejection(
        lambda: objects.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "modelservices", svc["metadata"]["name"], patch
        )
    )
    assert "spec.autoscaling.minReplicas" in message
