"""NetworkPolicy: serving pods accept traffic on the inference and metrics ports only."""

from __future__ import annotations

from conch.api import ModelService
from conch.builders.meta import Manifest, metadata, selector
from conch.builders.service import PORTS


def build(svc: ModelService) -> Manifest:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(svc, svc.metadata.name),
        "spec": {
            "podSelector": {"matchLabels": selector(svc)},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": [{"protocol": "TCP", "port": port} for _, port in PORTS]}],
        },
    }
