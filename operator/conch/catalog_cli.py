"""`conch catalog`: the shared models every team may serve, plus your namespace's own.

Reads with the caller's kubeconfig, so it shows exactly what the caller may see: every
CatalogEntry (readable by all authenticated users) and the ModelVersions of the caller's
namespace (private ones included), never another team's private versions.
"""

from __future__ import annotations

import argparse
import json

import yaml
from rich.console import Console
from rich.table import Table

from conch import catalog
from conch.errors import ApiError
from conch.kube import CATALOG_ENTRY, MODEL_VERSION, Kube

__all__ = ["add_arguments", "run"]

err = Console(stderr=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--namespace",
        "-n",
        help="your namespace, whose private ModelVersions are listed too (default: the "
        "kubeconfig context's)",
    )
    parser.add_argument("--output", "-o", choices=["table", "json", "yaml"], default="table")


def _size(size: int | None) -> str:
    if size is None:
        return ""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size = size / 1024  # type: ignore[assignment]
    return ""  # unreachable


def table(rows: list[catalog.Row]) -> Table:
    out = Table(title="Conch model catalog")
    columns = (
        "model", "version", "modelversion", "format", "size", "compression", "accuracy",
        "licence", "terms", "served by", "shared",
    )  # fmt: skip
    for column in columns:
        out.add_column(column, overflow="fold")
    for r in rows:
        out.add_row(
            r.model,
            r.version,
            f"{r.namespace}/{r.name}",
            r.format,
            _size(r.size_bytes),
            r.compression,
            "" if r.accuracy is None else f"{r.accuracy:.4f}",
            r.license,
            r.terms,
            "\n".join(r.served_by),
            "yes" if r.shared else "private",
        )
    return out


def run(args: argparse.Namespace) -> int:
    from conch.kubeclient import cli_rest, current_namespace

    kube = Kube(cli_rest())
    namespace = args.namespace or current_namespace()
    try:
        entries = kube.list(CATALOG_ENTRY, "", {})
    except ApiError as error:
        err.print(f"[yellow]cannot list the shared catalog: {error.message}[/]")
        entries = []
    try:
        own = kube.list(MODEL_VERSION, namespace, {})
    except ApiError as error:
        err.print(f"[yellow]cannot list ModelVersions in {namespace}: {error.message}[/]")
        own = []
    rows = catalog.rows(entries, own, namespace)
    if args.output == "json":
        print(json.dumps([r.as_dict() for r in rows], indent=2))
    elif args.output == "yaml":
        print(yaml.safe_dump([r.as_dict() for r in rows], sort_keys=False), end="")
    else:
        Console().print(table(rows))
    return 0
