"""The ModelVersion that `conch package` writes, applied to a real kube-apiserver: accepted
as written (OpenAPI schema and CEL rules), immutable afterwards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from conch_runtime.compress import CompressionOptions
from conch_runtime.package import PackageRequest, PackageResult, package
from tests.runtime.packaging import OUTPUT_NAMES, example, trained_teacher, validation

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("crds")]

GROUP, VERSION, PLURAL = "serving.conch.dev", "v1alpha1", "modelversions"


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> PackageResult:
    return package(
        trained_teacher(),
        tmp_path_factory.mktemp("mv") / "pkg",
        PackageRequest(
            name="mlp",
            version="1.0.0-int8",
            example=example(),
            output_names=OUTPUT_NAMES,
            validation=validation(),
            compression=CompressionOptions(int8=True, sparsity=0.3),
            baseline_version="mlp-1.0.0",
            uri="s3://conch-models/mlp/1.0.0-int8/mlp.tar.gz",
        ),
    )


def manifest(result: PackageResult) -> dict[str, Any]:
    return dict(yaml.safe_load(Path(result.modelversion).read_text()))


def rejection(call: Any) -> str:
    with pytest.raises(ApiException) as caught:
        call()
    assert caught.value.status == 422, caught.value.body
    return str(json.loads(caught.value.body)["message"])


def test_generated_modelversion_is_accepted_as_written(
    api: client.ApiClient, namespace: str, packaged: PackageResult
) -> None:
    objects = client.CustomObjectsApi(api)
    body = manifest(packaged)
    created = objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    stored = objects.get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, created["metadata"]["name"]
    )
    assert stored["spec"] == body["spec"]  # nothing pruned, nothing defaulted differently
    assert stored["spec"]["source"]["sha256"] == packaged.sha256
    assert stored["spec"]["compression"]["quantization"] == "int8-static"
    assert stored["spec"]["compression"]["latency"]["maxBatch"] == 64  # kept, not pruned

    # a merge patch, not a replace: the operator may have written status meanwhile, and a
    # stale resourceVersion would be refused as a conflict before the schema is asked
    message = rejection(
        lambda: objects.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            stored["metadata"]["name"],
            {"spec": {"compression": {"accuracy": 0.5}}},
        )
    )
    assert "spec is immutable" in message


def test_cel_rules_that_a_json_schema_check_cannot_see(
    api: client.ApiClient, namespace: str, packaged: PackageResult
) -> None:
    objects = client.CustomObjectsApi(api)
    body = manifest(packaged)
    body["metadata"]["name"] = "mlp-upper"
    body["spec"]["source"]["sha256"] = packaged.sha256.upper()
    message = rejection(
        lambda: objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    )
    assert "sha256 must be 64 lowercase hexadecimal characters" in message
