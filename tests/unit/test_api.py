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
    for part in (p for p in (resource.spec, resource.status) if p is not None):
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


TERMS = {"uri": "https://models.example/terms/digits-v1.pdf", "sha256": "a" * 64}


def test_usage_terms_parse_with_safe_defaults() -> None:
    from conch.api.modelversion import Usage

    usage = Usage.model_validate(
        {"license": "Apache-2.0", "terms": TERMS, "allowedNamespaces": ["team-b"]}
    )
    assert usage.terms is not None and usage.terms.sha256 == "a" * 64
    assert (usage.data.log_requests, usage.data.retain, usage.data.retention) == (
        False,
        False,
        None,
    )
    assert usage.expires is None
    assert usage.model_dump(exclude_defaults=True)["allowedNamespaces"] == ["team-b"]


def test_a_grant_reads_from_and_to_on_the_wire() -> None:
    from conch.api import ModelAccessGrant

    grant = ModelAccessGrant.model_validate(
        {
            "metadata": {"name": "digits-to-b", "namespace": "team-a"},
            "spec": {
                "from": [{"namespace": "team-b", "serviceNames": ["digits"]}],
                "to": [{"model": "digits"}, {"modelVersion": "digits-v1.2"}],
            },
        }
    )
    assert grant.spec.from_[0].service_names == ["digits"]
    assert grant.spec.to[1].model_version == "digits-v1.2"
    assert "from" in grant.spec.model_dump()


def test_model_service_accepts_terms_by_digest_only_in_the_schema() -> None:
    spec = crd(RESOURCES[1])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
        "spec"
    ]["properties"]
    rules = [r["rule"] for r in spec["acceptTerms"]["x-kubernetes-validations"]]
    assert rules == ["self.all(d, d.matches('^sha256:[a-f0-9]{64}$'))"]
    assert spec["modelNamespace"]["pattern"].startswith("^[a-z0-9]")


def test_the_grant_kind_has_no_status_and_a_short_name() -> None:
    grant = crd(RESOURCES[2])
    version = grant["spec"]["versions"][0]
    assert grant["spec"]["names"]["shortNames"] == ["mag"]
    assert "status" not in version["schema"]["openAPIV3Schema"]["properties"]
    assert version["subresources"] == {}
