"""`conch operator run`: start the operator (kopf runs the process, Conch's informers watch)."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import uuid
from pathlib import Path
from typing import Any

from conch import podflags, providers, rest
from conch.artifacts import ArtifactAccess
from conch.builders import PodSettings
from conch.builders.meta import MANAGED_BY, MANAGER
from conch.controller import FANOUT, Controller, service_index
from conch.informer import Watched
from conch.kopf_alone import Identity, kopf
from conch.kube import (
    CATALOG_ENTRY,
    MODEL_ACCESS_GRANT,
    MODEL_SERVICE,
    MODEL_VERSION,
    OWNED,
    Kube,
)
from conch.leader import LeaderElector
from conch.metrics import OperatorMetrics
from conch.policy import PodPolicy, image_rule
from conch.providers import Source
from conch_runtime.access import HostPattern
from conch_runtime.errors import PullError


def _host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host, int(port)


def _image_entry(value: str) -> str:
    try:
        if value:
            image_rule(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _flag_entry(value: str) -> str:
    try:
        if value:
            PodPolicy(allowed_triton_flags=(value,))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _add_policy_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags that build the PodPolicy. Each list replaces its default once given at all; an
    empty value (`--allowed-toleration-key=`) gives an empty list. `*` means any."""
    defaults = PodPolicy()
    group = parser.add_argument_group(
        "pod policy", "what a ModelService may put into its pods (docs/security.md)"
    )

    def listing(flag: str, metavar: str, default: tuple[str, ...], what: str, **kw: Any) -> None:
        shown = ", ".join(default) or "none"
        group.add_argument(
            flag,
            action="append",
            metavar=metavar,
            help=f"{what} (repeatable; default: {shown})",
            **kw,
        )

    listing(
        "--allowed-triton-image",
        "REF",
        defaults.allowed_triton_images,
        "allowed spec.triton.image: REGISTRY/PATH (that repository), REGISTRY/PATH/ (under it), "
        "REGISTRY/PATH:TAG, REGISTRY/PATH:PREFIX*, REGISTRY/PATH@sha256:HEX",
        type=_image_entry,
    )
    group.add_argument(
        "--require-image-digest",
        action="store_true",
        help="spec.triton.image must be pinned by digest (IMAGE@sha256:...)",
    )
    listing(
        "--allowed-priority-class",
        "NAME",
        defaults.allowed_priority_classes,
        "allowed spec.scheduling.priorityClassName",
    )
    listing(
        "--allowed-toleration-key",
        "KEY",
        defaults.allowed_toleration_keys,
        "allowed toleration keys; a toleration without a key needs *",
    )
    listing(
        "--allowed-node-selector-key",
        "KEY",
        defaults.allowed_node_selector_keys,
        "node labels a ModelService may select on (nodeSelector and nodeAffinity)",
    )
    listing(
        "--allowed-triton-flag",
        "FLAG",
        defaults.allowed_triton_flags,
        "Triton flags allowed in spec.triton.extraArgs, by full name",
        type=_flag_entry,
    )


def pod_policy(args: argparse.Namespace) -> PodPolicy:
    """The PodPolicy the command line asks for; unset lists keep PodPolicy's defaults."""
    defaults = PodPolicy()

    def chosen(given: list[str] | None, default: tuple[str, ...]) -> tuple[str, ...]:
        return default if given is None else tuple(v for v in given if v)

    return PodPolicy(
        allowed_triton_images=chosen(args.allowed_triton_image, defaults.allowed_triton_images),
        require_image_digest=args.require_image_digest,
        allowed_priority_classes=chosen(
            args.allowed_priority_class, defaults.allowed_priority_classes
        ),
        allowed_toleration_keys=chosen(
            args.allowed_toleration_key, defaults.allowed_toleration_keys
        ),
        allowed_node_selector_keys=chosen(
            args.allowed_node_selector_key, defaults.allowed_node_selector_keys
        ),
        allowed_triton_flags=chosen(args.allowed_triton_flag, defaults.allowed_triton_flags),
    )


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
    parser.add_argument("--workers", type=int, default=16, help="concurrent reconciles")
    parser.add_argument(
        "--leader-elect",
        action="store_true",
        help="run as one of several replicas: only the holder of a coordination.k8s.io Lease "
        "(in $POD_NAMESPACE, named by --leader-election-id) reconciles",
    )
    parser.add_argument("--leader-election-id", default="conch-operator", metavar="NAME")
    parser.add_argument("--verbose", "-v", action="store_true")
    _add_policy_arguments(parser)
    _add_source_arguments(parser)
    podflags.add_arguments(parser)
    _add_metrics_source_arguments(parser)


def _header_entry(value: str) -> tuple[str, str]:
    name, sep, content = value.partition("=")
    if not sep or not name.strip() or any(c in name for c in " :\r\n"):
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {value!r}")
    if any(c in content for c in "\r\n"):
        raise argparse.ArgumentTypeError(f"header {name} has a line break in its value")
    return name.strip(), content


def _positive_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= 300:
        raise argparse.ArgumentTypeError(f"expected seconds in (0, 300], got {value!r}")
    return seconds


def _add_metrics_source_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags for the Prometheus-compatible store rollout analysis reads (Prometheus,
    Thanos, Mimir, Cortex, managed Prometheus)."""
    group = parser.add_argument_group(
        "metrics source", "the Prometheus API that rollout analysis queries (docs/rollouts.md)"
    )
    group.add_argument(
        "--prometheus-url",
        metavar="URL",
        help="Prometheus API base URL (scrapes Triton); without it a canary that needs "
        "analysis does not start (reason NoMetricsSource)",
    )
    group.add_argument(
        "--prometheus-bearer-token-file",
        type=Path,
        metavar="PATH",
        help="file holding a bearer token, read on every query (a mounted Secret rotates)",
    )
    group.add_argument(
        "--prometheus-ca-file",
        type=Path,
        metavar="PATH",
        help="PEM CA bundle that signs the Prometheus server's certificate",
    )
    group.add_argument(
        "--prometheus-header",
        type=_header_entry,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra header on every query, e.g. X-Scope-OrgID=team-a (repeatable)",
    )
    group.add_argument(
        "--prometheus-timeout",
        type=_positive_seconds,
        default=Source.timeout,
        metavar="SECONDS",
        help=f"timeout of one query (default {Source.timeout:g})",
    )


def metrics_source(args: argparse.Namespace) -> Source | None:
    """The metrics source the command line asks for; None without --prometheus-url."""
    if not args.prometheus_url:
        return None
    return Source(
        url=args.prometheus_url,
        bearer_token_file=args.prometheus_bearer_token_file,
        ca_file=args.prometheus_ca_file,
        headers=dict(args.prometheus_header),
        timeout=args.prometheus_timeout,
    )


def _host_entry(value: str) -> str:
    try:
        HostPattern.parse(value)
    except PullError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None
    return value


def _add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags that bound artifact sources and where credentials may go (conch.artifacts)."""
    group = parser.add_argument_group(
        "artifact sources", "where models come from and where credentials go (docs/security.md)"
    )
    group.add_argument(
        "--credentials-host",
        action="append",
        type=_host_entry,
        default=[],
        metavar="HOST",
        help="a host[:port], *.domain or S3 bucket any opted-in credentials Secret may be "
        "sent to (repeatable); a Secret adds its own with the "
        "serving.conch.dev/credentials-hosts annotation",
    )
    group.add_argument(
        "--s3-endpoint", metavar="URL", help="S3 endpoint the pull step uses (default: AWS)"
    )
    group.add_argument(
        "--allow-file-sources",
        action="store_true",
        help="serve file:// artifacts (the sandbox and tests only: they read the runtime "
        "container's own files)",
    )


def artifact_access(args: argparse.Namespace) -> ArtifactAccess:
    return ArtifactAccess(
        credentials_hosts=tuple(args.credentials_host),
        allow_file=args.allow_file_sources,
        s3_endpoint=args.s3_endpoint,
    )


def watches(api: rest.Rest, args: argparse.Namespace) -> Watched:
    """Everything the operator watches (nothing is listed or watched until `start`)."""
    return Watched(
        api,
        OWNED,
        MODEL_VERSION,
        (MODEL_SERVICE, service_index),
        f"{MANAGED_BY}={MANAGER}",
        args.namespace or None,
        grants=MODEL_ACCESS_GRANT,
        catalog=CATALOG_ENTRY,
    )


def connections(args: argparse.Namespace) -> int:
    """Connections the operator may hold open at once, all kept for reuse: its watches (one
    per owned kind, ModelVersions, ModelServices and grants in each namespace watched, and
    the cluster-wide catalog), a request per worker and its fan-out threads, Events and the
    Lease. A connection the pool cannot keep is closed, and its successor pays a new TLS
    handshake on both ends."""
    watches = (len(OWNED) + 3) * max(1, len(args.namespace or ())) + 1
    return watches + int(args.workers) * (1 + FANOUT) + 2


def run(args: argparse.Namespace) -> int:
    from conch.handlers import Runtime  # registers the startup and cleanup handlers

    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat.PLAIN)
    logging.getLogger("conch").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    if not args.verbose:  # kopf logs every trigger at INFO; the controller logs decisions
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    metrics = OperatorMetrics()
    kube = Kube(rest.Rest(rest.login(), pool_size=connections(args)), observe=metrics.api_request)
    source = metrics_source(args)
    provider = providers.create("prometheus", source) if source else None
    settings = podflags.pod_settings(
        args, args.runtime_image, pod_policy(args), artifact_access(args)
    )
    watched = watches(kube.api, args)
    controller = Controller(kube, settings, metrics, watched, provider, workers=args.workers)
    # The pod's name (chart: POD_NAME), else one of our own. Given to kopf too, which would
    # otherwise ask getpass for a user name: a pod's uid (65532) has no passwd entry.
    identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"
    elector = None
    if args.leader_elect:
        elector = LeaderElector(
            kube.api,
            os.environ.get("POD_NAMESPACE") or "default",
            args.leader_election_id,
            identity,
        )
    metrics.serve(*args.metrics_bind_address)
    health_host, health_port = args.health_bind_address
    kopf.run(
        standalone=True,
        identity=Identity(identity),
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        liveness_endpoint=f"http://{health_host}:{health_port}/healthz",
        memo=kopf.Memo(
            runtime=Runtime(controller=controller, workers=args.workers, elector=elector)
        ),
    )
    return 0
