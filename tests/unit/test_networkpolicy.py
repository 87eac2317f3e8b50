"""The NetworkPolicy builder: spec.access -> a default-deny policy admitting exactly its peers.

Regenerate the golden file after an intended change: `UPDATE_GOLDEN=1 pytest tests/unit`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from conch.api import ModelService
from conch.builders import networkpolicy

GOLDEN = Path(__file__).parent / "golden"


def service(access: dict[str, Any] | None) -> ModelService:
    spec: dict[str, Any] = {"modelVersion": "digits-v1"}
    if access is not None:
        spec["access"] = access
    return ModelService.model_validate(
        {"metadata": {"name": "digits", "namespace": "team-a", "uid": "u-1"}, "spec": spec}
    )


ACCESS = {
    "allowedNamespaces": ["team-b", "gateways"],
    "pods": [
        {"podSelector": {"app": "frontend"}},
        {"namespace": "team-d", "podSelector": {"role": "batch", "app": "scorer"}},
        {"namespace": "team-a", "podSelector": {}},
    ],
}


def test_golden_access_policy() -> None:
    rendered = yaml.safe_dump(networkpolicy.build(service(ACCESS), ("monitoring",)), sort_keys=True)
    golden = GOLDEN / "networkpolicy-access.yaml"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(rendered)
    assert rendered == golden.read_text(), "builder changed: review, then UPDATE_GOLDEN=1"


def test_without_access_every_caller_reaches_the_ports_only() -> None:
    policy = networkpolicy.build(service(None), ("monitoring",))
    (rule,) = policy["spec"]["ingress"]
    assert "from" not in rule  # anyone, as before spec.access existed
    assert [p["port"] for p in rule["ports"]] == [8000, 8001, 8002]


def test_access_admits_exactly_the_named_peers() -> None:
    inference, scrape = networkpolicy.build(service(ACCESS), ("monitoring",))["spec"]["ingress"]
    assert [p["port"] for p in inference["ports"]] == [8000, 8001]
    assert inference["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "team-b"}}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateways"}}},
        {"podSelector": {"matchLabels": {"app": "frontend"}}},  # own namespace
        {  # namespace AND labels, in one peer
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "team-d"}},
            "podSelector": {"matchLabels": {"app": "scorer", "role": "batch"}},
        },
        {"podSelector": {"matchLabels": {}}},  # its own namespace named: every pod there
    ]
    assert [p["port"] for p in scrape["ports"]] == [8002]
    assert scrape["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]


@pytest.mark.parametrize("scrapers", [(), ("monitoring",)])
def test_empty_access_denies_every_caller(scrapers: tuple[str, ...]) -> None:
    """An empty `from` would admit everyone: a rule without peers is left out instead."""
    ingress = networkpolicy.build(service({}), scrapers)["spec"]["ingress"]
    assert all(rule.get("from") for rule in ingress)
    assert len(ingress) == len(scrapers)
    assert all(p["port"] == 8002 for rule in ingress for p in rule["ports"])


def test_allowed_namespaces_are_dns_labels_in_the_crd() -> None:
    """List items are checked by the API server (the CRD schema), not by the model."""
    from conch.api import crd

    schema = crd.structural(ModelService.model_fields["spec"].annotation)  # type: ignore[arg-type]
    items = schema["properties"]["access"]["properties"]["allowedNamespaces"]["items"]
    assert items == {
        "type": "string",
        "maxLength": 63,
        "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
    }


@pytest.mark.parametrize(
    "access",
    [
        {"pods": [{"namespace": "x.y", "podSelector": {}}]},
        {"pods": [{"namespace": "a" * 64, "podSelector": {}}]},
        {"pods": [{"namespace": "team-b"}]},  # podSelector is required
    ],
)
def test_bad_access_is_refused_by_the_model(access: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        service(access)
