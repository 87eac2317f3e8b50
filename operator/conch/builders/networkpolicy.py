"""NetworkPolicy: who may reach the serving pods, and on which ports.

Without `spec.access` the pods accept traffic on the inference and metrics ports from
anywhere (the ports are the only limit). With it the policy is default-deny: the inference
ports admit exactly the namespaces and pods `spec.access` names, and the metrics port only
the namespaces the admin lists (operator flag `--metrics-scrape-namespace`). An empty `from`
in a NetworkPolicy rule means "everyone", so a rule with no peers is left out, never
written empty. Namespaces are matched on `kubernetes.io/metadata.name`, which the API
server sets and nobody can change, so a tenant cannot label its way into another's list.
"""

from __future__ import annotations

from typing import Any

from conch.api import ModelService
from conch.builders.meta import Manifest, metadata, selector
from conch.builders.service import GRPC_PORT, HTTP_PORT, METRICS_PORT, PORTS

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"

Peer = dict[str, Any]


def _namespace(name: str) -> Peer:
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: name}}}


def _ports(*ports: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": port} for port in ports]


def callers(svc: ModelService) -> list[Peer]:
    """The peers `spec.access` admits to the inference ports, in spec order."""
    access = svc.spec.access
    if access is None:
        return []
    peers = [_namespace(ns) for ns in access.allowed_namespaces]
    for pods in access.pods:
        peer: Peer = {"podSelector": {"matchLabels": dict(sorted(pods.pod_selector.items()))}}
        if pods.namespace is not None and pods.namespace != svc.metadata.namespace:
            peer = {**_namespace(pods.namespace), **peer}
        peers.append(peer)
    return peers


def build(svc: ModelService, scrapers: tuple[str, ...] = ()) -> Manifest:
    """The service's NetworkPolicy; `scrapers` are the namespaces allowed the metrics port
    when `spec.access` is set."""
    if svc.spec.access is None:
        ingress = [{"ports": _ports(*(port for _, port in PORTS))}]
    else:
        ingress = []
        if peers := callers(svc):
            ingress.append({"from": peers, "ports": _ports(HTTP_PORT, GRPC_PORT)})
        if scrapers:
            ingress.append(
                {"from": [_namespace(ns) for ns in scrapers], "ports": _ports(METRICS_PORT)}
            )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(svc, svc.metadata.name),
        "spec": {
            "podSelector": {"matchLabels": selector(svc)},
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    }
