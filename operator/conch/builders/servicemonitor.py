"""ServiceMonitor (prometheus-operator): scrape Triton's nv_inference_* metrics."""

from __future__ import annotations

from conch.api import ModelService
from conch.builders.meta import VERSION_LABEL, Manifest, metadata, selector

API_VERSION = "monitoring.coreos.com/v1"


def build(svc: ModelService) -> Manifest:
    return {
        "apiVersion": API_VERSION,
        "kind": "ServiceMonitor",
        "metadata": metadata(svc, svc.metadata.name),
        "spec": {
            "selector": {"matchLabels": selector(svc)},
            # the version label lets rollout analysis tell canary from stable series
            "podTargetLabels": [VERSION_LABEL],
            "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s"}],
        },
    }
