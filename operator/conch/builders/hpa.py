"""The HorizontalPodAutoscaler (autoscaling/v2) of the serving Deployment.

Triton's queue time and inference rate reach the HPA as per-pod custom metrics through
prometheus-adapter; docs/autoscaling.md has the adapter rules that publish them.
"""

from __future__ import annotations

from typing import Any

from conch.api import ModelService
from conch.api.modelservice import Autoscaling
from conch.builders.meta import Manifest, metadata

CUSTOM_METRICS = {
    "queueTime": "conch_triton_queue_time_per_request_us",
    "inferenceRate": "conch_triton_inferences_per_second",
}


def _metric(autoscaling: Autoscaling) -> dict[str, Any]:
    if autoscaling.metric == "cpu":
        return {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": int(autoscaling.target)},
            },
        }
    return {
        "type": "Pods",
        "pods": {
            "metric": {"name": CUSTOM_METRICS[autoscaling.metric]},
            "target": {"type": "AverageValue", "averageValue": str(autoscaling.target)},
        },
    }


def build(svc: ModelService, deployment_name: str) -> Manifest | None:
    autoscaling = svc.spec.autoscaling
    if autoscaling is None:
        return None
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(svc, svc.metadata.name),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": deployment_name,
            },
            "minReplicas": autoscaling.min_replicas,
            "maxReplicas": autoscaling.max_replicas,
            "metrics": [_metric(autoscaling)],
        },
    }
