"""`conch publish`: package (or take a package), upload and apply its ModelVersion, with
terms, in one step.

    conch publish MODEL --name N --version V [package options] --to s3://BUCKET/PREFIX ...
    conch publish PKG --to s3://BUCKET/PREFIX [-n NAMESPACE] [--share]
        [--license SPDX] [--terms-uri URI --terms-file FILE | --terms-sha256 HEX]
        [--purpose P]... [--allow-namespace NS]... [--expires RFC3339]

MODEL is what `conch package` takes (a .pt2, a TorchScript file, module:factory), packaged
with the runtime's own `package` and the same options (`--out` keeps the package; without
it the package lives in a temporary directory until the upload is done). Packaging needs
the runtime's torch (`pip install 'conch[package]'`); without it, package elsewhere and
publish the directory. PKG is a `conch package` output directory, taken as it is.

The artifact goes up with `conch push` (checked against the package's digest first), then
the ModelVersion it wrote is created with the caller's kubeconfig, so publishing needs
exactly the rights creating it by hand needs. `--share` adds the
`serving.conch.dev/catalog=shared` label: every team then sees it in `conch catalog`. A
ModelVersion is immutable, so one that already exists with the same spec is left as it is,
and one with another spec is refused (publish a new version instead).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError
from rich.console import Console

from conch import catalog
from conch.api import ModelVersion

if TYPE_CHECKING:
    from conch_runtime.package import PackageResult
    from conch_runtime.push import PushResult

__all__ = ["add_arguments", "is_package", "modelversion", "run"]

PACKAGING_NEEDS = (
    "packaging a model needs the runtime's PyTorch (pip install 'conch[package]'); "
    "or package it where torch is (`conch package`) and publish the package directory"
)

err = Console(stderr=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from conch_runtime.tools_cli import add_package_arguments

    parser.add_argument(
        "source",
        help="a `conch package` output directory, or a model to package: model.pt2, a "
        "TorchScript file, or package.module:factory",
    )
    parser.add_argument("--to", required=True, metavar="s3://BUCKET[/PREFIX]")
    parser.add_argument("--endpoint", metavar="URL", help="S3 endpoint (default: AWS)")
    parser.add_argument(
        "--credentials-secret", metavar="NAME", help="Secret the serving pods pull with"
    )
    parser.add_argument("--namespace", "-n", help="default: the kubeconfig context's")
    parser.add_argument(
        "--modelversion", metavar="NAME", help="ModelVersion name (default: the package's)"
    )
    parser.add_argument(
        "--share", action="store_true", help="list it in the catalog every team sees"
    )
    terms = parser.add_argument_group("usage terms (spec.usage, docs/catalog.md)")
    terms.add_argument("--license", metavar="SPDX", help="SPDX licence id, e.g. Apache-2.0")
    terms.add_argument("--terms-uri", metavar="URI", help="https:// URI of the terms document")
    digest = terms.add_mutually_exclusive_group()
    digest.add_argument("--terms-file", type=Path, help="the terms document (its sha256 is taken)")
    digest.add_argument("--terms-sha256", metavar="HEX", help="sha256 of the terms document")
    terms.add_argument(
        "--purpose", action="append", default=[], help="allowed purpose (repeatable)"
    )
    terms.add_argument(
        "--allow-namespace",
        action="append",
        default=[],
        metavar="NS",
        help="namespace whose ModelServices may serve it, with a ModelAccessGrant (repeatable)",
    )
    terms.add_argument("--expires", metavar="RFC3339", help="no serving after this time")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the ModelVersion, upload and apply nothing"
    )
    # packaging a MODEL: `conch package`'s own options (refused with a package directory)
    dests = add_package_arguments(parser, required=False)
    parser.set_defaults(package_defaults={d: parser.get_default(d) for d in dests})


def _terms(args: argparse.Namespace) -> dict[str, str] | None:
    if args.terms_uri is None:
        if args.terms_file or args.terms_sha256:
            raise ValueError("--terms-file/--terms-sha256 need --terms-uri")
        return None
    if args.terms_file:
        digest = hashlib.sha256(args.terms_file.read_bytes()).hexdigest()
    elif args.terms_sha256:
        digest = args.terms_sha256
    else:
        raise ValueError("--terms-uri needs --terms-file or --terms-sha256 (consumers accept it)")
    return {"uri": args.terms_uri, "sha256": digest}


def usage(args: argparse.Namespace) -> dict[str, Any] | None:
    """spec.usage from the command line; None when no term was given."""
    out: dict[str, Any] = {
        "license": args.license,
        "terms": _terms(args),
        "purposes": list(args.purpose) or None,
        "allowedNamespaces": list(args.allow_namespace) or None,
        "expires": args.expires,
    }
    out = {k: v for k, v in out.items() if v is not None}
    return out or None


def modelversion(
    written: dict[str, Any],
    namespace: str,
    name: str | None,
    usage: dict[str, Any] | None,
    share: bool,
) -> dict[str, Any]:
    """The ModelVersion to create: the package's, in `namespace`, with terms and label.
    ValueError if the result is not a valid ModelVersion."""
    body = {**written, "spec": dict(written["spec"])}
    meta = dict(body.get("metadata") or {})
    meta["namespace"] = namespace
    if name:
        meta["name"] = name
    if share:
        meta["labels"] = {**(meta.get("labels") or {}), catalog.CATALOG_LABEL: catalog.SHARED}
    body["metadata"] = meta
    if usage:
        body["spec"]["usage"] = usage
    try:
        ModelVersion.model_validate(body)
    except ValidationError as error:
        raise ValueError(f"not a valid ModelVersion: {error}") from None
    return body


def _apply(body: dict[str, Any]) -> str:
    """Create the ModelVersion; an identical one is fine, another spec is refused."""
    from kubernetes import client

    from conch.api import GROUP, VERSION
    from conch.kubeclient import load_api_client

    api = client.CustomObjectsApi(load_api_client(pool_size=2))
    meta = body["metadata"]
    try:
        api.create_namespaced_custom_object(
            GROUP, VERSION, meta["namespace"], "modelversions", body
        )
        return "created"
    except client.ApiException as error:
        if error.status != 409:
            raise ValueError(f"creating ModelVersion {meta['name']}: {error.reason}") from None
    existing = api.get_namespaced_custom_object(
        GROUP, VERSION, meta["namespace"], "modelversions", meta["name"]
    )
    if existing["spec"] != body["spec"]:
        raise ValueError(
            f"ModelVersion {meta['namespace']}/{meta['name']} exists with another spec "
            "(specs are immutable): publish under a new --name"
        )
    labels = meta.get("labels") or {}
    if labels.get(catalog.CATALOG_LABEL) and not catalog.is_shared(existing):
        api.patch_namespaced_custom_object(
            GROUP, VERSION, meta["namespace"], "modelversions", meta["name"],
            {"metadata": {"labels": {catalog.CATALOG_LABEL: catalog.SHARED}}},
        )  # fmt: skip
        return "shared"
    return "unchanged"


def is_package(source: Path) -> bool:
    """Whether `source` is a `conch package` output directory (it holds the manifest)."""
    from conch_runtime.manifest import MANIFEST

    return source.is_dir() and (source / MANIFEST).is_file()


def _packaging_given(args: argparse.Namespace) -> list[str]:
    """The packaging options given on the command line (those not at their default)."""
    defaults: dict[str, Any] = args.package_defaults
    return [
        "--" + dest.replace("_", "-")
        for dest, default in defaults.items()
        if getattr(args, dest) != default
    ]


def _package_function() -> Callable[[str, Path, argparse.Namespace], PackageResult]:
    """The runtime's packaging, or a clear error where its torch is not installed."""
    try:
        import conch_runtime.package  # noqa: F401  (torch, at import)
        from conch_runtime.tools_cli import package_from_args
    except ImportError as error:
        raise ValueError(f"{PACKAGING_NEEDS} ({error})") from None
    return package_from_args


@contextlib.contextmanager
def package_directory(args: argparse.Namespace) -> Iterator[Path]:
    """The package to publish: `args.source` itself when it is one, else the model packaged
    with `conch package`'s options, into `--out` or a temporary directory (removed after)."""
    source = Path(args.source)
    if is_package(source):
        if given := _packaging_given(args):
            raise ValueError(
                f"{source} is a package already; {', '.join(given)} apply only when "
                "packaging a model"
            )
        yield source
        return
    if source.is_dir():
        raise ValueError(f"{source} is a directory but not a package (no conch.json)")
    if not (args.name and args.version):
        raise ValueError(
            f"packaging {args.source} needs --name and --version (or give a package directory)"
        )
    package_from_args = _package_function()
    if args.out is not None:
        package_from_args(args.source, args.out, args)
        yield args.out
        return
    with tempfile.TemporaryDirectory(prefix="conch-publish-") as scratch:
        out = Path(scratch) / f"{args.name}-{args.version}"
        package_from_args(args.source, out, args)
        yield out


def _push(package: Path, args: argparse.Namespace) -> PushResult:
    try:
        from conch_runtime.push import push
    except ImportError as error:
        raise ValueError(f"uploading needs pip install 'conch[runtime]' ({error})") from None
    return push(
        package, args.to, endpoint=args.endpoint, credentials_secret=args.credentials_secret
    )


def _publish(args: argparse.Namespace, namespace: str) -> str | None:
    """Package (if need be), push and apply; what was done, or None for a dry run."""
    from conch_runtime.modelversion import MODELVERSION

    terms = usage(args)  # bad terms are refused before minutes of packaging
    with package_directory(args) as directory:
        written = yaml.safe_load((directory / MODELVERSION).read_text())
        body = modelversion(written, namespace, args.modelversion, terms, args.share)
        if args.dry_run:
            print(yaml.safe_dump(body, sort_keys=False), end="")
            return None
        pushed = _push(directory, args)
        written = yaml.safe_load(pushed.modelversion.read_text())
    body = modelversion(written, namespace, args.modelversion, terms, args.share)
    outcome = _apply(body)
    shared = " (shared in the catalog)" if args.share else ""
    return (
        f"{pushed.uri} ({pushed.size_bytes} bytes); ModelVersion "
        f"{namespace}/{body['metadata']['name']} {outcome}{shared}"
    )


def run(args: argparse.Namespace) -> int:
    from conch.kubeclient import current_namespace
    from conch_runtime.tool_errors import ToolError

    namespace = args.namespace or current_namespace()
    try:
        done = _publish(args, namespace)
    except (ValueError, OSError, ToolError) as error:
        err.print(f"[red]conch publish: {error}[/]")
        return 1
    if done is not None:
        err.print(done)
    return 0
