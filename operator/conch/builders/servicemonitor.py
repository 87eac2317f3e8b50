"""ServiceMonitor (prometheus-operator): scrape Triton's nv_inference_* metrics."""

from __future__ import annotations

from conch.api import ModelService
from conch.builders.meta import Manifest, metadata, selector

API_VERSION = "monitoring.coreos.com/v1"


def build(svc: ModelService) -> Manifest:
    return {
        "apiVersion": API_VERSION,
        "kind": "ServiceMonitor",
        "metadata": metadata(svc, svc.metadata.name),
        "spec": {
            "selector": {"matchLabels": selector(svc)},
            "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s"}],
        },
    }
