"""The HorizontalPodAutoscaler (autoscaling/v2) of a ModelService.

It scales the ModelService itself (its scale subresource, `spec.autoscaling.replicas`),
not a Deployment: its metric is averaged over the pods of every served version, and Conch
splits the count it asks for between the stable and canary Deployments by the rollout
step's weight, so capacity follows the autoscaler through a rollout.

Triton's queue time and inference rate reach the HPA as per-pod custom metrics through
prometheus-adapter; docs/autoscaling.md has the adapter rules that publish them.
"""

from __future__ import annotations

from typing import Any

from conch.api import ModelService
from conch.api.common import GROUP, VERSION
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


def build(svc: ModelService) -> Manifest | None:
    autoscaling = svc.spec.autoscaling
    if autoscaling is None:
        return None
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(svc, svc.metadata.name),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "ModelService",
                "name": svc.metadata.name,
            },
            "minReplicas": autoscaling.min_replicas,
            "maxReplicas": autoscaling.max_replicas,
            "metrics": [_metric(autoscaling)],
        },
    }
