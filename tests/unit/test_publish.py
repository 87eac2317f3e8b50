"""`conch publish` without a cluster: the ModelVersion it writes (terms, the shared label)
and how it decides between taking a package and packaging a model."""

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


def taken(parsed: argparse.Namespace) -> Path:
    """The directory `conch publish` would upload from."""
    with publish.package_directory(parsed) as directory:
        return directory


def package_dir(root: Path) -> Path:
    """A directory `is_package` takes for a package (it holds conch.json)."""
    root.mkdir()
    (root / "conch.json").write_text("{}")
    return root


def test_a_package_directory_is_taken_as_it_is(tmp_path: Path) -> None:
    pkg = package_dir(tmp_path / "pkg")
    parsed = args("--share")
    parsed.source = str(pkg)
    assert taken(parsed) == pkg


def test_packaging_options_with_a_package_are_refused(tmp_path: Path) -> None:
    parsed = args("--int8", "--name", "digits")
    parsed.source = str(package_dir(tmp_path / "pkg"))
    with pytest.raises(ValueError, match=r"--name, --int8 apply only when packaging"):
        taken(parsed)


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (("--name", "digits"), "needs --name and --version"),  # a model, no version
        (("--version", "1.0.0"), "needs --name and --version"),
    ],
)
def test_packaging_needs_a_name_and_version(argv: tuple[str, ...], match: str) -> None:
    parsed = args(*argv)
    parsed.source = "digits.pt2"
    with pytest.raises(ValueError, match=match):
        taken(parsed)


def test_a_directory_that_is_no_package_is_refused(tmp_path: Path) -> None:
    parsed = args("--name", "digits", "--version", "1.0.0")
    parsed.source = str(tmp_path)
    with pytest.raises(ValueError, match="not a package"):
        taken(parsed)


def test_packaging_without_torch_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator's install has no torch: publishing a model says how to get it, before
    anything is uploaded or applied."""
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    monkeypatch.delitem(sys.modules, "conch_runtime.package", raising=False)
    parsed = args("--name", "digits", "--version", "1.0.0")
    parsed.source = "digits.pt2"
    with pytest.raises(ValueError, match=r"conch\[package\]"):
        taken(parsed)
