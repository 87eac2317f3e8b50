"""`conch keys rotate|show NAME CONSUMER...`: endpoint keys of a ModelService's consumers.

Runs with the caller's kubeconfig and rights. `rotate` writes what a person would write
with kubectl: the serving.conch.dev/rotate-keys annotation, which the operator acts on
(a new key in the consumer's Secret, the old one refused once the pods' gate Secret
volume catches up) and removes. `show` prints a consumer's key from its Secret, for
handing it over (it needs get on Secrets in the namespace).
"""

from __future__ import annotations

import argparse
import base64
import sys
from typing import Any

from rich.console import Console

from conch import endpointkey
from conch.errors import ConchError
from conch.kube import MODEL_SERVICE, SECRET, Kube

__all__ = ["add_arguments", "request", "run", "show"]

err = Console(stderr=True)


def request(consumers: list[str]) -> dict[str, Any]:
    """The JSON merge patch asking the operator to replace these consumers' keys."""
    value = ",".join(sorted(set(consumers)))
    return {"metadata": {"annotations": {endpointkey.ROTATE_ANNOTATION: value}}}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        choices=["rotate", "show"],
        help="rotate: replace the named consumers' keys (--all: every one); show: print one key",
    )
    parser.add_argument("name", help="the ModelService")
    parser.add_argument("consumers", nargs="*", help="consumer names (spec.access.consumers)")
    parser.add_argument("--all", action="store_true", help="rotate: every consumer's key")
    parser.add_argument("--namespace", "-n", help="default: the kubeconfig context's")


def show(kube: Kube, namespace: str, service: str, consumer: str) -> int:
    name = endpointkey.key_secret_name(service, consumer)
    secret = kube.get(SECRET, namespace, name)
    if secret is None:
        err.print(
            f"[red]no key Secret {namespace}/{name}: is {consumer} a consumer of {service}?[/]"
        )
        return 1
    sys.stdout.write(base64.b64decode(secret["data"][endpointkey.SECRET_KEY]).decode() + "\n")
    return 0


def run(args: argparse.Namespace) -> int:
    # here, not at the top: `conch.cli` builds every parser, and the operator's process
    # must not import the kubernetes client (tests/unit/test_operator_imports.py)
    from conch.kubeclient import cli_rest, current_namespace

    namespace = args.namespace or current_namespace()
    if args.action == "show" and len(args.consumers) != 1:
        err.print("[red]show takes exactly one consumer[/]")
        return 2
    if args.action == "rotate" and not (args.consumers or args.all):
        err.print("[red]name the consumers to rotate, or --all[/]")
        return 2
    kube = Kube(cli_rest())
    try:
        if args.action == "show":
            return show(kube, namespace, args.name, args.consumers[0])
        kube.patch(MODEL_SERVICE, namespace, args.name, request(args.consumers or ["*"]))
    except ConchError as error:
        err.print(f"[red]{error.message}[/]")
        return 1
    err.print(
        f"rotation requested for {namespace}/{args.name}: {', '.join(args.consumers) or 'all'}"
    )
    return 0
