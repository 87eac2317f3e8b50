"""Specs the API server accepts but the children's APIs refuse: all or nothing, reported at
once with one Event, never a retry loop (issue: bad input never gets half-made)."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from tests.support import create_service, create_version, eventually, get_service, stays, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("operator")]

OWNED_LISTS = {
    "Deployment": lambda api, ns: client.AppsV1Api(api).list_namespaced_deployment(ns),
    "Service": lambda api, ns: client.CoreV1Api(api).list_namespaced_service(ns),
    "PodDisruptionBudget": lambda api, ns: client.PolicyV1Api(
        api
    ).list_namespaced_pod_disruption_budget(ns),
    "NetworkPolicy": lambda api, ns: client.NetworkingV1Api(api).list_namespaced_network_policy(ns),
    "HorizontalPodAutoscaler": lambda api, ns: client.AutoscalingV2Api(
        api
    ).list_namespaced_horizontal_pod_autoscaler(ns),
}


def nothing_made(api: client.ApiClient, ns: str) -> bool:
    return all(not list_(api, ns).items for list_ in OWNED_LISTS.values())


def invalid_spec_events(api: client.ApiClient, ns: str) -> list[Any]:
    return [
        e
        for e in client.CoreV1Api(api).list_namespaced_event(ns).items
        if e.reason == "InvalidSpec" and e.involved_object.kind == "ModelService"
    ]


REFUSED_BY_CHILDREN = [
    # (case, spec change, words in the message)
    (
        "affinity with a key no Pod knows (server-side apply answers 500)",
        {"scheduling": {"affinity": {"nodeAfinity": {}}}},
        "nodeAfinity",
    ),
    (
        "node affinity with an operator the Pod API refuses (422)",
        {
            "scheduling": {
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {
                                    "matchExpressions": [
                                        {
                                            "key": "kubernetes.io/arch",
                                            "operator": "Near",
                                            "values": ["amd64"],
                                        }
                                    ]
                                }
                            ]
                        }
                    }
                }
            }
        },
        "Near",
    ),
]


@pytest.mark.parametrize(
    ("spec", "words"),
    [pytest.param(spec, words, id=case) for case, spec, words in REFUSED_BY_CHILDREN],
)
def test_a_spec_the_children_refuse_makes_nothing(
    api: client.ApiClient, namespace: str, spec: dict[str, Any], words: str
) -> None:
    create_version(api, namespace)
    create_service(api, namespace, **spec)
    ready = wait_for(api, namespace, "Ready", "False", "InvalidSpec", timeout=30)
    assert words in ready["message"]
    eventually(lambda: invalid_spec_events(api, namespace), what="an InvalidSpec Event")
    assert nothing_made(api, namespace)
    # reported once and left alone: no retry loop writing status or posting Events
    version = get_service(api, namespace)["metadata"]["resourceVersion"]
    stays(
        lambda: (
            get_service(api, namespace)["metadata"]["resourceVersion"] == version
            and len(invalid_spec_events(api, namespace)) == 1
            and nothing_made(api, namespace)
        ),
        4,
        what="status and Events unchanged",
    )
