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


def test_a_service_the_quota_refuses_is_reported_once(
    api: client.ApiClient, namespace: str
) -> None:
    """A Service is created off the reconcile (the API server allocates ClusterIPs one at a
    time): its refusal still reaches status, once, and the service is not Ready without it."""
    core = client.CoreV1Api(api)
    core.create_namespaced_resource_quota(
        namespace,
        client.V1ResourceQuota(
            metadata=client.V1ObjectMeta(name="no-services"),
            spec=client.V1ResourceQuotaSpec(hard={"count/services": "0"}),
        ),
    )
    eventually(
        lambda: core.read_namespaced_resource_quota("no-services", namespace).status.hard,
        what="the quota in force",
    )
    create_version(api, namespace)
    create_service(api, namespace)
    ready = wait_for(api, namespace, "Ready", "False", "KubernetesAPIError", timeout=30)
    assert "exceeded quota" in ready["message"]
    assert not OWNED_LISTS["Service"](api, namespace).items

    def refusals() -> int:
        return sum(
            1
            for e in core.list_namespaced_event(namespace).items
            if e.reason == "KubernetesAPIError" and e.involved_object.kind == "ModelService"
        )

    eventually(lambda: refusals() == 1, what="one Event")
    # no loop of sent-off creates and status flips: the refusal is told once
    stays(lambda: refusals() == 1, 6, what="one refusal Event")
    assert wait_for(api, namespace, "Ready", "False", "KubernetesAPIError", timeout=5)
