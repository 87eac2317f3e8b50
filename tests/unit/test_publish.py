"""`conch publish`'s pure part: the package's ModelVersion plus terms and the shared label."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import Any

import pytest

from conch import catalog, publish
from tests.unit.test_builders import example


def args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    publish.add_arguments(parser)
    return parser.parse_args(["pkg", "--to", "s3://models/team-a", *argv])


def written() -> dict[str, Any]:
    body = example("modelversion.yaml")
    body["metadata"] = {"name": "digits-v1"}
    return body


def test_terms_digest_is_the_documents(tmp_path: Path) -> None:
    terms = tmp_path / "terms.md"
    terms.write_text("Use for research only.\n")
    usage = publish.usage(
        args(
            "--license", "Apache-2.0", "--terms-uri", "https://legal.example.com/t",
            "--terms-file", str(terms), "--purpose", "research", "--allow-namespace", "team-b",
            "--expires", "2027-01-01T00:00:00Z",
        )
    )  # fmt: skip
    assert usage == {
        "license": "Apache-2.0",
        "terms": {
            "uri": "https://legal.example.com/t",
            "sha256": hashlib.sha256(terms.read_bytes()).hexdigest(),
        },
        "purposes": ["research"],
        "allowedNamespaces": ["team-b"],
        "expires": "2027-01-01T00:00:00Z",
    }


def test_no_terms_no_usage() -> None:
    assert publish.usage(args()) is None


@pytest.mark.parametrize(
    "argv",
    [
        ("--terms-uri", "https://legal.example.com/t"),  # consumers need a digest to accept
        ("--terms-sha256", "a" * 64),  # a digest of what?
    ],
)
def test_half_given_terms_are_refused(argv: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="terms"):
        publish.usage(args(*argv))


def test_shared_modelversion_in_the_namespace() -> None:
    usage = {"license": "MIT"}
    body = publish.modelversion(written(), "team-a", None, usage, share=True)
    assert body["metadata"] == {
        "name": "digits-v1",
        "namespace": "team-a",
        "labels": {catalog.CATALOG_LABEL: catalog.SHARED},
    }
    assert body["spec"]["usage"] == usage
    assert body["spec"]["source"] == written()["spec"]["source"]
    private = publish.modelversion(written(), "team-a", "digits-v1-b", None, share=False)
    assert private["metadata"] == {"name": "digits-v1-b", "namespace": "team-a"}
    assert "usage" not in private["spec"]


def test_an_invalid_modelversion_is_refused_before_upload() -> None:
    body = written()
    body["spec"]["source"]["sha256"] = 12
    with pytest.raises(ValueError, match="not a valid ModelVersion"):
        publish.modelversion(body, "team-a", None, None, share=False)
