"""`conch operator run`: start the kopf operator with Conch's handlers."""

from __future__ import annotations

import argparse
import logging

import kopf

from conch import providers
from conch.builders import PodSettings
from conch.controller import Controller
from conch.kube import Kube, load_api_client
from conch.metrics import OperatorMetrics


def _host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host, int(port)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace", "-n", action="append", default=[], help="watch this namespace (repeatable)"
    )
    scope.add_argument(
        "--all-namespaces",
        "-A",
        action="store_true",
        help="watch every namespace (the default without --namespace)",
    )
    parser.add_argument(
        "--metrics-bind-address", type=_host_port, default=("0.0.0.0", 8080), metavar="HOST:PORT"
    )
    parser.add_argument(
        "--health-bind-address", type=_host_port, default=("0.0.0.0", 8081), metavar="HOST:PORT"
    )
    parser.add_argument(
        "--runtime-image",
        default=PodSettings.runtime_image,
        help="image of the init container that pulls and verifies artifacts",
    )
    parser.add_argument(
        "--prometheus-url",
        metavar="URL",
        help="Prometheus that scrapes Triton, for rollout analysis",
    )
    parser.add_argument("--workers", type=int, default=16, help="concurrent reconciles")
    parser.add_argument("--verbose", "-v", action="store_true")


def run(args: argparse.Namespace) -> int:
    from conch.handlers import Runtime  # registers the handlers with kopf

    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat.PLAIN)
    logging.getLogger("conch").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    if not args.verbose:  # kopf logs every trigger at INFO; the controller logs decisions
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    metrics = OperatorMetrics()
    kube = Kube(load_api_client(pool_size=args.workers * 2), on_error=metrics.api_error)
    provider = providers.create("prometheus", args.prometheus_url) if args.prometheus_url else None
    controller = Controller(kube, PodSettings(runtime_image=args.runtime_image), metrics, provider)
    metrics.serve(*args.metrics_bind_address)
    health_host, health_port = args.health_bind_address
    kopf.run(
        standalone=True,
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        liveness_endpoint=f"http://{health_host}:{health_port}/healthz",
        memo=kopf.Memo(runtime=Runtime(controller=controller, workers=args.workers)),
    )
    return 0
