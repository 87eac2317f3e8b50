"""The catalog's pure parts: what a CatalogEntry copies, and the rows `conch catalog` prints."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from conch import catalog
from conch.api.catalogentry import CatalogEntry

TERMS = {"uri": "https://legal.example.com/digits-terms", "sha256": "a" * 64}


def version(
    name: str = "digits-int8", namespace: str = "team-a", shared: bool = True, **usage: Any
) -> dict[str, Any]:
    labels = {catalog.CATALOG_LABEL: catalog.SHARED} if shared else {}
    return {
        "metadata": {"name": name, "namespace": namespace, "labels": labels, "uid": "u"},
        "spec": {
            "model": "digits",
            "version": "1.0.0-int8",
            "format": "python",
            "source": {"uri": "s3://models/digits.tar", "sha256": "b" * 64},
            "signature": {"inputs": [], "outputs": []},
            "compression": {
                "quantization": "int8-dynamic",
                "baselineAccuracy": 0.97,
                "accuracy": 0.965,
                "accuracyMetric": "top1",
                "sizeBytes": 123456,
            },
            **({"usage": usage} if usage else {}),
        },
        "status": {"usedBy": ["digits"]},
    }


def test_mirror_copies_only_what_the_owner_published() -> None:
    mv = version(
        license="Apache-2.0",
        terms=TERMS,
        purposes=["research"],
        expires="2027-01-01T00:00:00Z",
        allowedNamespaces=["team-b"],
        data={"logRequests": False, "retain": False},
    )
    entry = catalog.mirror(mv, [("team-b", "digits"), ("team-a", "digits"), ("team-b", "digits")])
    assert entry["metadata"]["name"] == "team-a.digits-int8"
    assert "namespace" not in entry["metadata"]  # cluster-scoped
    assert "ownerReferences" not in entry["metadata"]  # a namespaced owner cannot hold it
    assert entry["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "conch-operator",
        "serving.conch.dev/source-namespace": "team-a",
        "serving.conch.dev/model": "digits",
    }
    assert entry["spec"] == {
        "modelVersion": {"namespace": "team-a", "name": "digits-int8"},
        "model": "digits",
        "version": "1.0.0-int8",
        "format": "python",
        "sizeBytes": 123456,
        "compression": {
            "quantization": "int8-dynamic",
            "accuracy": 0.965,
            "baselineAccuracy": 0.97,
            "accuracyMetric": "top1",
        },
        "license": "Apache-2.0",
        "terms": TERMS,
        "purposes": ["research"],
        "expires": "2027-01-01T00:00:00Z",
        "servedBy": [
            {"namespace": "team-a", "service": "digits"},
            {"namespace": "team-b", "service": "digits"},
        ],
    }
    # where the artifact lives, its credentials and whom the owner grants are not copied
    text = str(entry)
    assert "s3://" not in text and "team-b'" not in str(entry["spec"].get("allowedNamespaces"))
    CatalogEntry.model_validate(entry)


def test_mirror_without_usage_or_compression() -> None:
    mv = version()
    del mv["spec"]["compression"]
    spec = catalog.mirror(mv, [])["spec"]
    assert spec == {
        "modelVersion": {"namespace": "team-a", "name": "digits-int8"},
        "model": "digits",
        "version": "1.0.0-int8",
        "format": "python",
        "purposes": [],
        "servedBy": [],
    }


def test_entry_names_cannot_collide() -> None:
    """Namespaces hold no dots, so `<namespace>.<name>` splits one way only."""
    names = {catalog.entry_name(ns, n) for ns, n in [("a", "b.c"), ("ab", "c"), ("a", "bc")]}
    assert len(names) == 3
    assert catalog.entry_name("team-a", "x.y").split(".", 1) == ["team-a", "x.y"]


@pytest.mark.parametrize(
    ("labels", "shared"),
    [
        ({catalog.CATALOG_LABEL: "shared"}, True),
        ({catalog.CATALOG_LABEL: "yes"}, False),
        ({}, False),
    ],
)
def test_only_the_shared_label_value_shares(labels: dict[str, str], shared: bool) -> None:
    assert catalog.is_shared({"metadata": {"labels": labels}}) is shared


def test_is_mirror_needs_the_operators_label() -> None:
    entry = catalog.mirror(version(), [])
    assert catalog.is_mirror(entry)
    foreign = copy.deepcopy(entry)
    del foreign["metadata"]["labels"]["app.kubernetes.io/managed-by"]
    assert not catalog.is_mirror(foreign)


def test_bad_published_values_are_refused() -> None:
    mv = version(license="x" * 200)
    with pytest.raises(ValidationError):
        catalog.mirror(mv, [])


def test_rows_shared_entries_plus_own_namespace() -> None:
    shared_elsewhere = catalog.mirror(
        version("digits-fp32", "team-a", license="MIT", terms=TERMS), [("team-b", "d")]
    )
    own_private = version("mine", "team-b", shared=False)
    own_shared = version("digits-int8", "team-b")  # listed once, from its entry
    own_entry = catalog.mirror(own_shared, [("team-b", "digits")])
    rows = catalog.rows([shared_elsewhere, own_entry], [own_private, own_shared], "team-b")
    assert [(r.namespace, r.name, r.shared) for r in rows] == [
        ("team-a", "digits-fp32", True),
        ("team-b", "digits-int8", True),
        ("team-b", "mine", False),
    ]
    first = rows[0]
    assert first.license == "MIT"
    assert first.terms == f"{TERMS['uri']} (sha256:{'a' * 64})"
    assert first.served_by == ("team-b/d",)
    assert first.compression == "int8-dynamic"
    assert first.accuracy == 0.965
    assert first.size_bytes == 123456
    assert rows[2].served_by == ("team-b/digits",)  # from the private version's status
    assert rows[0].as_dict()["modelVersion"] == "digits-fp32"


def watched_service(
    name: str, namespace: str, version: str, model_namespace: str | None = None, **status: Any
) -> dict[str, Any]:
    """A ModelService as the operator's watch keeps it."""
    spec = {"modelVersion": version, "modelNamespace": model_namespace}
    return {"metadata": {"name": name, "namespace": namespace}, "spec": spec, "status": status}


@pytest.mark.parametrize(
    ("service", "keys"),
    [
        (watched_service("s", "team-a", "v2", stable={"version": "v1"}),
         [("team-a", "uses/v1"), ("team-a", "uses/v2")]),
        (watched_service("s", "team-b", "v1", "team-a"), [("team-a", "elsewhere/v1")]),
        (watched_service("s", "team-b", "v1", "team-a",
                         conditions=[{"type": "Ready", "reason": "UsageNotGranted"}]), []),
        ({**watched_service("s", "team-a", "v1"),
          "metadata": {"name": "s", "namespace": "team-a", "deletionTimestamp": "now"}}, []),
    ],
)  # fmt: skip
def test_a_service_is_found_under_the_versions_it_serves(
    service: dict[str, Any], keys: list[tuple[str, str]]
) -> None:
    """usedBy (own namespace) and the catalog's servedBy (another's, while its terms let it)
    read these keys instead of decoding every watched service."""
    from conch.controller import service_index

    assert service_index(service) == keys


def test_the_informer_finds_services_by_their_index_keys() -> None:
    """Keys follow the object: a change of version moves it, a deletion drops it."""
    from conch.controller import service_index
    from conch.informer import Informer
    from conch.kube import MODEL_SERVICE

    informer = Informer(None, MODEL_SERVICE, "", index=service_index)  # type: ignore[arg-type]
    informer._put(watched_service("a", "team-b", "v1", "team-a"))
    informer._put(watched_service("b", "team-b", "v1", "team-a"))
    informer._put(watched_service("c", "team-a", "v1"))
    assert [s["metadata"]["name"] for s in informer.indexed("team-a", "elsewhere/v1")] == ["a", "b"]
    assert [s["metadata"]["name"] for s in informer.indexed("team-a", "uses/v1")] == ["c"]
    informer._put(watched_service("a", "team-b", "v2", "team-a"))
    informer._pop("team-a", "c")
    assert [s["metadata"]["name"] for s in informer.indexed("team-a", "elsewhere/v1")] == ["b"]
    assert [s["metadata"]["name"] for s in informer.indexed("team-a", "elsewhere/v2")] == ["a"]
    assert informer.indexed("team-a", "uses/v1") == []
