"""The API models: examples parse, defaults hold, and the rendered schemas are structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from conch.api import ModelService, ModelVersion
from conch.api.crd import RESOURCES, crd, files, structural
from conch.api.modelservice import ModelServiceSpec

ROOT = Path(__file__).resolve().parents[2]


def test_examples_parse() -> None:
    mv = ModelVersion.model_validate(
        yaml.safe_load((ROOT / "examples/modelversion.yaml").read_text())
    )
    assert mv.spec.signature.inputs[0].data_type == "TYPE_FP32"
    svc = ModelService.model_validate(
        yaml.safe_load((ROOT / "examples/modelservice.yaml").read_text())
    )
    assert svc.spec.model_version == mv.metadata.name
    assert svc.spec.rollout.steps is not None and [s.weight for s in svc.spec.rollout.steps] == [
        10,
        50,
    ]


def test_defaults_of_a_minimal_model_service() -> None:
    spec = ModelServiceSpec.model_validate({"modelVersion": "digits-v1"})
    assert spec.resources.gpus == 1
    assert spec.rollout.strategy == "Canary"
    assert spec.rollout.router == "replicas"
    assert spec.rollout.analysis.interval == "30s"
    assert spec.model_dump(exclude_defaults=True) == {"modelVersion": "digits-v1"}


def test_wire_names_are_camel_case() -> None:
    spec = ModelServiceSpec.model_validate({"modelVersion": "m", "rollout": {"maxExtraGPUs": 2}})
    assert spec.rollout.max_extra_gpus == 2
    dumped = spec.model_dump(exclude_none=True)
    assert dumped["rollout"]["maxExtraGPUs"] == 2
    assert set(dumped) >= {"modelVersion", "resources", "rollout", "triton"}


def test_python_side_validation_matches_the_schema_bounds() -> None:
    with pytest.raises(ValidationError):
        ModelServiceSpec.model_validate({"modelVersion": "m", "resources": {"gpus": -1}})


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        out.append((path, node))
        for key, sub in node.get("properties", {}).items():
            out += _walk(sub, f"{path}.{key}")
        if isinstance(node.get("items"), dict):
            out += _walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            out += _walk(node["additionalProperties"], f"{path}{{}}")
    return out


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.kind)
def test_schemas_are_structural(resource: Any) -> None:
    for part in (resource.spec, resource.status):
        for path, node in _walk(structural(part)):
            assert "$ref" not in node and "title" not in node, path
            assert (
                "type" in node
                or node.get("x-kubernetes-int-or-string")
                or node.get("x-kubernetes-preserve-unknown-fields")
            ), f"{path} has no type"
            assert node.get("additionalProperties") not in (True, False), path
            if "anyOf" in node:
                assert node.get("x-kubernetes-int-or-string"), (
                    f"{path}: anyOf only for int-or-string"
                )
            if "exclusiveMinimum" in node:
                assert node["exclusiveMinimum"] is True and "minimum" in node, path


def test_every_spec_field_is_described() -> None:
    """kubectl explain is the user's manual: leaves without a description fail here."""
    undocumented = []
    for resource in RESOURCES:
        for path, node in _walk(structural(resource.spec)):
            if path and "description" not in node and not path.endswith("[]"):
                undocumented.append(f"{resource.kind}.spec{path}")
    # Self-describing leaves are allowed; this list is the budget, keep it from growing.
    assert len(undocumented) <= 45, undocumented


def test_model_version_spec_is_immutable_in_the_schema() -> None:
    spec = crd(RESOURCES[0])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
        "spec"
    ]
    rules = [v["rule"] for v in spec["x-kubernetes-validations"]]
    assert "self == oldSelf" in rules


def test_committed_crds_are_fresh() -> None:
    for name, text in files().items():
        committed = ROOT / "crds" / name
        assert committed.exists(), f"{committed} missing: run `make crds`"
        assert committed.read_text() == text, f"{committed} is stale: run `make crds`"
