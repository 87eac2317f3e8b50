"""PodDisruptionBudget: node drains take serving pods down one at a time, for a service that
can run more than one pod."""

from __future__ import annotations

from conch.api import ModelService
from conch.builders.meta import Manifest, metadata, selector


def build(svc: ModelService) -> Manifest:
    # maxUnavailable, not minAvailable: a single-replica service must still be drainable.
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(svc, svc.metadata.name),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(svc)}},
    }


def needed(svc: ModelService, versions: int) -> bool:
    """Whether the service can run more than one pod (its spec allows it, or several
    versions run during a rollout). Over a single pod a budget of maxUnavailable 1
    constrains nothing, and every budget costs the API server its writes and the disruption
    controller its status updates."""
    autoscaling = svc.spec.autoscaling
    most = autoscaling.max_replicas if autoscaling is not None else svc.spec.replicas
    return versions > 1 or (1 if most is None else most) > 1
