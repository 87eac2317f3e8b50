"""Operator flags that fit serving pods into a platform: the pods' ServiceAccount (cloud
identity for artifact pulls), image pull secrets, extra env, labels and annotations,
/dev/shm size, the model volume's size limit and ephemeral-storage request, and topology
spread. The cluster admin owns
them (chart values `servingPods.*`); a tenant's ModelService cannot change them.

`conch operator run` adds these with `add_arguments` and builds its PodSettings with
`pod_settings`.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import Final

from conch.artifacts import ArtifactAccess
from conch.builders import PodSettings
from conch.policy import PodPolicy

__all__ = ["add_arguments", "pod_settings"]

_DNS_SUBDOMAIN: Final = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_DNS_LABEL: Final = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_QUALIFIED: Final = re.compile(
    r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_LABEL_VALUE: Final = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_ENV_NAME: Final = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_QUANTITY: Final = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$")


def _checked(pattern: re.Pattern[str], what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not pattern.match(value):
            raise argparse.ArgumentTypeError(f"{value!r} is not a valid {what}")
        return value

    return check


def _pair(
    key: re.Pattern[str], value: re.Pattern[str] | None, what: str
) -> Callable[[str], tuple[str, str]]:
    def parse(text: str) -> tuple[str, str]:
        name, sep, content = text.partition("=")
        if not sep or not key.match(name):
            raise argparse.ArgumentTypeError(f"expected {what} NAME=VALUE, got {text!r}")
        if value is not None and not value.match(content):
            raise argparse.ArgumentTypeError(f"{content!r} is not a valid {what} value")
        return name, content

    return parse


def _factor(text: str) -> float:
    try:
        factor = float(text)
    except ValueError:
        factor = -1.0
    if not 0 <= factor <= 100:
        raise argparse.ArgumentTypeError(f"expected a factor from 0 (off) to 100, got {text!r}")
    return factor


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = PodSettings()
    group = parser.add_argument_group(
        "serving pods", "how serving pods fit the platform (the admin's, never the tenant's)"
    )
    group.add_argument(
        "--serving-service-account",
        type=_checked(_DNS_SUBDOMAIN, "ServiceAccount name"),
        metavar="NAME",
        help="ServiceAccount of serving pods in every namespace (e.g. one bound to IRSA or "
        "Workload Identity, so pulls use the cloud's ambient credentials); it must exist "
        "in each ModelService's namespace",
    )
    group.add_argument(
        "--serving-image-pull-secret",
        action="append",
        default=[],
        type=_checked(_DNS_SUBDOMAIN, "Secret name"),
        metavar="NAME",
        help="image pull Secret of serving pods (repeatable; in each namespace)",
    )
    group.add_argument(
        "--serving-env",
        action="append",
        default=[],
        type=_pair(_ENV_NAME, None, "environment variable"),
        metavar="NAME=VALUE",
        help="extra environment of both containers (repeatable); Conch's own wins",
    )
    group.add_argument(
        "--serving-label",
        action="append",
        default=[],
        type=_pair(_QUALIFIED, _LABEL_VALUE, "label"),
        metavar="KEY=VALUE",
        help="extra pod label (repeatable); Conch's own labels win",
    )
    group.add_argument(
        "--serving-annotation",
        action="append",
        default=[],
        type=_pair(_QUALIFIED, None, "annotation"),
        metavar="KEY=VALUE",
        help="extra pod annotation (repeatable); Conch's own win",
    )
    group.add_argument(
        "--shm-size",
        type=_checked(_QUANTITY, "quantity"),
        default=defaults.shm_size,
        metavar="QUANTITY",
        help=f"size of the pods' /dev/shm (memory-backed; default {defaults.shm_size})",
    )
    group.add_argument(
        "--model-volume-factor",
        type=_factor,
        default=defaults.model_volume_factor,
        metavar="FACTOR",
        help="the model volume's size limit and ephemeral-storage request are this many "
        "times the ModelVersion's recorded artifact size (at least 256Mi); 0: no limit "
        f"(default {defaults.model_volume_factor:g})",
    )
    group.add_argument(
        "--ephemeral-storage-request",
        action="store_true",
        help="request the model volume's limit as ephemeral-storage (nodes must report "
        "ephemeral-storage, as real kubelets do)",
    )
    group.add_argument(
        "--no-topology-spread",
        dest="topology_spread",
        action="store_false",
        help="do not spread a version's replicas across nodes",
    )
    group.add_argument(
        "--metrics-scrape-namespace",
        action="append",
        default=[],
        type=_checked(_DNS_LABEL, "namespace name"),
        metavar="NAMESPACE",
        help="namespace whose pods (Prometheus) may scrape the metrics port of a ModelService "
        "with spec.access, whose NetworkPolicy denies everyone else (repeatable)",
    )


def pod_settings(
    args: argparse.Namespace, runtime_image: str, policy: PodPolicy, access: ArtifactAccess
) -> PodSettings:
    """The PodSettings the command line asks for."""
    return PodSettings(
        runtime_image=runtime_image,
        policy=policy,
        access=access,
        shm_size=args.shm_size,
        service_account=args.serving_service_account,
        image_pull_secrets=tuple(args.serving_image_pull_secret),
        env=dict(args.serving_env),
        labels=dict(args.serving_label),
        annotations=dict(args.serving_annotation),
        model_volume_factor=args.model_volume_factor,
        ephemeral_storage_request=args.ephemeral_storage_request,
        topology_spread=args.topology_spread,
        metrics_scrape_namespaces=tuple(args.metrics_scrape_namespace),
    )
