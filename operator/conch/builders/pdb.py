"""PodDisruptionBudget: node drains take serving pods down one at a time."""

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
