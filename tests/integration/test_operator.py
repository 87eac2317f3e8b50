"""The operator on the real control plane: ModelService -> owned objects -> truthful status."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from conch.builders.meta import version_child_name
from conch.dev.operator import OperatorProcess
from tests.support import (
    condition,
    create_service,
    create_version,
    eventually,
    get_service,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("operator")]

GROUP, VERSION = "serving.conch.dev", "v1alpha1"
OWNED = (
    "deployments",
    "services",
    "horizontalpodautoscalers",
    "poddisruptionbudgets",
    "networkpolicies",
)


def owned(kubectl: Callable[..., str], ns: str) -> dict[str, dict[str, Any]]:
    items = yaml.safe_load(
        kubectl("get", ",".join(OWNED), "-n", ns, "-l", "serving.conch.dev/service", "-o", "yaml")
    )["items"]
    return {f"{i['kind']}/{i['metadata']['name']}": i for i in items}


def used_by(api: client.ApiClient, ns: str) -> list[str] | None:
    mv = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, ns, "modelversions", "digits-v1"
    )
    return mv.get("status", {}).get("usedBy")


def events(api: client.ApiClient, ns: str, name: str = "digits") -> list[Any]:
    """Events about the ModelService (read through core/v1, which also shows events.k8s.io ones)."""
    found = client.CoreV1Api(api).list_namespaced_event(ns).items
    return [
        e
        for e in found
        if e.involved_object.kind == "ModelService" and e.involved_object.name == name
    ]


def test_example_becomes_ready_with_its_objects(
    api: client.ApiClient, namespace: str, kubectl: Callable[..., str]
) -> None:
    create_version(api, namespace)
    create_service(api, namespace)
    kubectl("wait", "--for=condition=Ready", "msvc/digits", "-n", namespace, "--timeout=90s")
    objects = owned(kubectl, namespace)
    assert set(objects) == {
        "Deployment/" + version_child_name("digits", "digits-v1"),
        "Service/digits",
        "HorizontalPodAutoscaler/digits",
        "PodDisruptionBudget/digits",
        "NetworkPolicy/digits",
    }
    uid = get_service(api, namespace)["metadata"]["uid"]
    for obj in objects.values():
        assert obj["metadata"]["ownerReferences"][0]["uid"] == uid
    pods = (
        client.CoreV1Api(api)
        .list_namespaced_pod(namespace, label_selector="serving.conch.dev/version=digits-v1")
        .items
    )
    assert len(pods) == 2  # the HPA's minReplicas
    for pod in pods:
        node = client.CoreV1Api(api).read_node(pod.spec.node_name)
        assert node.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-80GB"
    table = kubectl("get", "msvc", "-n", namespace).splitlines()
    assert table[0].split() == [
        "NAME",
        "VERSION",
        "STABLE",
        "CANARY",
        "WEIGHT",
        "READY",
        "PHASE",
        "AGE",
    ]
    assert table[1].split()[:5] == ["digits", "digits-v1", "digits-v1", "True", "Stable"]

    # The HPA's first write to the scale subresource bumps the generation (to 2) whenever
    # its sync comes before this point: status must have observed whichever is current.
    def observed() -> dict[str, Any] | None:
        service = get_service(api, namespace)
        generation = service["metadata"]["generation"]
        return service if service["status"].get("observedGeneration") == generation else None

    status = eventually(observed, 30, what="status observing the current generation")["status"]
    assert status["stable"] == {
        "version": "digits-v1",
        "replicas": 2,
        "readyReplicas": 2,
        "weight": 100,
    }
    assert status["endpoints"]["grpc"] == f"digits.{namespace}.svc:8001"
    eventually(  # Events are posted off the reconcile path, soon after status says so
        lambda: {"Created", "Available"} <= {e.reason for e in events(api, namespace)},
        30,
        what="the Created and Available Events",
    )


def test_more_gpus_than_exist_is_insufficient_gpu(api: client.ApiClient, namespace: str) -> None:
    create_version(api, namespace)
    create_service(api, namespace, autoscaling=None, replicas=1, resources={"gpus": 8})
    ready = wait_for(api, namespace, "Ready", "False", "InsufficientGPU")
    assert "Insufficient nvidia.com/gpu" in ready["message"]
    degraded = wait_for(api, namespace, "Degraded", "True", "InsufficientGPU")
    assert degraded["message"]
    warnings = eventually(
        lambda: [e for e in events(api, namespace) if e.reason == "InsufficientGPU"],
        30,
        what="an InsufficientGPU Event",
    )
    assert warnings[0].type == "Warning"


def test_missing_model_version_then_created(api: client.ApiClient, namespace: str) -> None:
    create_service(api, namespace)
    cond = wait_for(api, namespace, "Ready", "False", "ModelVersionNotFound")
    assert "digits-v1" in cond["message"]
    assert not client.AppsV1Api(api).list_namespaced_deployment(namespace).items
    create_version(api, namespace)
    wait_for(api, namespace, "Ready", "True", "Available", timeout=90)


def test_delete_removes_every_owned_object(
    api: client.ApiClient, namespace: str, kubectl: Callable[..., str]
) -> None:
    create_version(api, namespace)
    create_service(api, namespace)
    eventually(lambda: len(owned(kubectl, namespace)) == 5, what="owned objects")
    eventually(lambda: used_by(api, namespace) == ["digits"], what="ModelVersion usedBy")
    client.CustomObjectsApi(api).delete_namespaced_custom_object(
        GROUP, VERSION, namespace, "modelservices", "digits"
    )
    eventually(lambda: not owned(kubectl, namespace), 60, what="garbage collection")
    eventually(lambda: used_by(api, namespace) == [], what="ModelVersion no longer used")


def test_a_spec_change_right_after_a_status_write_is_acted_on(
    api: client.ApiClient, namespace: str
) -> None:
    """A reconcile plans from the watched ModelService, or from the answer of the operator's
    own last status write while the watch has not delivered it: either way a spec changed
    just after Ready is acted on at once, well inside `conch.unseen.LAG` (the order of the
    watch and the write's answer is left to chance here; tests/unit/test_unseen.py has both)."""
    create_version(api, namespace)
    create_service(api, namespace, autoscaling=None, replicas=1)
    wait_for(api, namespace, "Ready", "True", timeout=90)
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "modelservices", "digits", {"spec": {"replicas": 2}}
    )
    apps = client.AppsV1Api(api)
    name = version_child_name("digits", "digits-v1")
    eventually(
        lambda: apps.read_namespaced_deployment(name, namespace).spec.replicas == 2,
        15,
        what="the new replica count in the Deployment",
    )


def test_drift_is_repaired(api: client.ApiClient, namespace: str) -> None:
    create_version(api, namespace)
    create_service(api, namespace)
    wait_for(api, namespace, "Ready", "True", timeout=90)
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    patch = {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "triton", "image": "evil.example/triton:1"}]}
            }
        }
    }
    apps.patch_namespaced_deployment(version_child_name("digits", "digits-v1"), namespace, patch)
    core.delete_namespaced_service("digits", namespace)

    def repaired() -> bool:
        dep = apps.read_namespaced_deployment(version_child_name("digits", "digits-v1"), namespace)
        images = [c.image for c in dep.spec.template.spec.containers]
        services = core.list_namespaced_service(
            namespace, field_selector="metadata.name=digits"
        ).items
        return images == ["nvcr.io/nvidia/tritonserver:25.10-py3"] and len(services) == 1

    eventually(repaired, 60, what="drift repaired")
    # the Event is posted right after the apply that repaired the Deployment
    eventually(
        lambda: any(e.reason == "Updated" for e in events(api, namespace)),
        30,
        what="an Updated event",
    )


def test_dropping_autoscaling_deletes_the_hpa(api: client.ApiClient, namespace: str) -> None:
    create_version(api, namespace)
    create_service(api, namespace)
    autoscaling = client.AutoscalingV2Api(api)
    eventually(
        lambda: autoscaling.list_namespaced_horizontal_pod_autoscaler(namespace).items, what="HPA"
    )
    objects = client.CustomObjectsApi(api)
    objects.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "modelservices", "digits", {"spec": {"autoscaling": None}}
    )
    eventually(
        lambda: not autoscaling.list_namespaced_horizontal_pod_autoscaler(namespace).items,
        what="HPA deleted",
    )
    # only now: until its HPA is gone, the HPA controller may still write spec.replicas
    # through the scale subresource, over the test's own value
    objects.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "modelservices", "digits", {"spec": {"replicas": 3}}
    )
    apps = client.AppsV1Api(api)
    name = version_child_name("digits", "digits-v1")
    eventually(lambda: apps.read_namespaced_deployment(name, namespace).spec.replicas == 3)
    eventually(
        lambda: (
            (c := condition(api, namespace, "Ready"))
            and c["status"] == "True"
            and c["observedGeneration"] == 3
        ),
        timeout=90,
        what="Ready for the last spec",
    )


def test_a_new_services_deployment_is_created_then_applied_like_the_rest(
    api: client.ApiClient, namespace: str
) -> None:
    """A new service's Deployment is created with a POST alongside the checks of the rest
    (`plan.Plan.create`). Before its first change, its fields are handed to Conch's
    server-side apply, so a field the spec no longer implies is removed from it, as from
    any object Conch applied."""
    create_version(api, namespace)
    sized = {"gpus": 0, "cpu": "1", "memory": "1Gi"}
    create_service(api, namespace, autoscaling=None, replicas=1, resources=sized)
    apps = client.AppsV1Api(api)
    name = version_child_name("digits", "digits-v1")

    def owners() -> list[tuple[str, str]] | None:
        found = apps.list_namespaced_deployment(namespace, field_selector=f"metadata.name={name}")
        if not found.items:
            return None
        entries = found.items[0].metadata.managed_fields or []
        return [(e.manager, e.operation) for e in entries if not e.subresource]

    def memory() -> tuple[str | None, str | None]:
        pod = apps.read_namespaced_deployment(name, namespace).spec.template.spec
        resources = pod.containers[0].resources
        return (resources.requests or {}).get("memory"), (resources.limits or {}).get("memory")

    assert eventually(owners, what="the Deployment") == [("conch", "Update")]  # a POST's
    wait_for(api, namespace, "Ready", "True", "Available")
    assert owners() == [("conch", "Update")]  # reconciles since wrote nothing to it
    assert memory() == ("1Gi", "1Gi")
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "modelservices",
        "digits",
        {"spec": {"resources": {"memory": None}}},
    )
    eventually(lambda: memory() == (None, None), what="the memory request and limit removed")
    assert owners() == [("conch", "Apply")]


def test_objects_the_api_refuses_are_invalid_spec(api: client.ApiClient, namespace: str) -> None:
    create_version(api, namespace)
    bad_affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}
        }
    }
    create_service(api, namespace, scheduling={"affinity": bad_affinity})
    cond = wait_for(api, namespace, "Ready", "False", "InvalidSpec")
    assert "nodeSelectorTerms" in cond["message"]


def test_restricted_namespace_admits_serving_pods(api: client.ApiClient, namespace: str) -> None:
    client.CoreV1Api(api).patch_namespace(
        namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )
    create_version(api, namespace)
    create_service(api, namespace)
    wait_for(api, namespace, "Ready", "True", timeout=90)


def _resource_versions(
    api: client.ApiClient, kubectl: Callable[..., str], ns: str
) -> dict[str, Any]:
    """What the operator last wrote to each object: its own managedFields entries (an apply
    that changes anything moves them; other controllers' writes, such as the HPA
    controller's status every 15 s, do not), and the ModelService's resourceVersion."""
    selector = ["-n", ns, "-l", "serving.conch.dev/service"]
    listed = kubectl("get", ",".join(OWNED), *selector, "-o", "yaml", "--show-managed-fields")
    items = yaml.safe_load(listed)["items"]
    versions: dict[str, Any] = {
        f"{i['kind']}/{i['metadata']['name']}": [
            e for e in i["metadata"].get("managedFields", []) if e.get("manager") == "conch"
        ]
        for i in items
    }
    versions["ModelService/digits"] = get_service(api, ns)["metadata"]["resourceVersion"]
    return versions


def _gauge_total(metrics: str) -> float:
    lines = [
        line
        for line in metrics.splitlines()
        if line.startswith('conch_modelservices{condition="Ready"')
    ]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def hpa_settled(api: client.ApiClient, ns: str) -> None:
    """Wait until the HPA has synced once (raised the scale to minReplicas, recorded its
    conditions) and the operator has seen that generation."""

    def settled() -> bool:
        hpa = client.AutoscalingV2Api(api).read_namespaced_horizontal_pod_autoscaler("digits", ns)
        svc = get_service(api, ns)
        return (
            bool(hpa.status.conditions)
            and svc["spec"]["autoscaling"]["replicas"] == svc["spec"]["autoscaling"]["minReplicas"]
            and svc.get("status", {}).get("observedGeneration") == svc["metadata"]["generation"]
        )

    eventually(settled, 60, what="the HPA's first sync")


def test_restart_writes_nothing(
    api: client.ApiClient, namespace: str, kubectl: Callable[..., str], operator: OperatorProcess
) -> None:
    create_version(api, namespace)
    create_service(api, namespace)
    wait_for(api, namespace, "Ready", "True", timeout=90)
    hpa_settled(api, namespace)  # the HPA's own writes are not the operator's
    before = _resource_versions(api, kubectl, namespace)
    operator.stop()
    operator.start()
    total = len(
        client.CustomObjectsApi(api).list_cluster_custom_object(GROUP, VERSION, "modelservices")[
            "items"
        ]
    )
    eventually(
        lambda: _gauge_total(operator.metrics()) >= total, what="every ModelService reconciled"
    )
    assert _resource_versions(api, kubectl, namespace) == before
    text = operator.metrics()
    assert 'conch_reconcile_total{result="success"}' in text
    # every reconcile since the restart wrote nothing at all: not even a no-op apply
    writes = _sample(text, 'conch_reconcile_api_requests_count{kind="write"}')
    assert writes >= 1
    assert _sample(text, 'conch_reconcile_api_requests_bucket{kind="write",le="0.0"}') == writes
    # ... and planned from what it watches: no ModelService was read from the API server
    assert 'verb="get",resource="modelservices"' not in text


def _sample(text: str, series: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(series + " "))
    return float(line.rsplit(" ", 1)[1])


def test_metrics(operator: OperatorProcess) -> None:
    text = operator.metrics()
    for name in (
        "conch_reconcile_total",
        "conch_reconcile_duration_seconds_bucket",
        'conch_modelservices{condition="Ready",status="True"}',
        'conch_rollout_phase{phase="Stable"}',
        "conch_kubernetes_api_errors",
        "# TYPE conch_kubernetes_api_request_duration_seconds histogram",
    ):
        assert name in text, name


def test_namespaced_operator_ignores_other_namespaces(
    api: client.ApiClient, kubectl: Callable[..., str], operator: OperatorProcess, tmp_path: Path
) -> None:
    core = client.CoreV1Api(api)
    watched, other = "scope-watched", "scope-other"
    for ns in (watched, other):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    operator.stop()
    scoped = OperatorProcess(
        operator.kubeconfig, tmp_path / "scoped.log", "--namespace", watched
    ).start()
    try:
        for ns in (watched, other):
            eventually(
                lambda ns=ns: core.list_namespaced_service_account(ns).items, what="service account"
            )
            create_version(api, ns)
            create_service(api, ns)
        wait_for(api, watched, "Ready", "True", timeout=90)
        assert "status" not in get_service(api, other)
        assert not client.AppsV1Api(api).list_namespaced_deployment(other).items
    finally:
        scoped.stop()
        operator.start()
        for ns in (watched, other):
            core.delete_namespace(ns)


def scale(api: client.ApiClient, ns: str, replicas: int | None = None) -> dict[str, Any]:
    """The ModelService's scale subresource, as the HPA reads it (and writes it)."""
    objects = client.CustomObjectsApi(api)
    if replicas is not None:
        objects.patch_namespaced_custom_object_scale(
            GROUP, VERSION, ns, "modelservices", "digits", {"spec": {"replicas": replicas}}
        )
    return dict(
        objects.get_namespaced_custom_object_scale(GROUP, VERSION, ns, "modelservices", "digits")
    )


def test_the_hpa_scales_the_service_and_a_rollout_splits_its_count(
    api: client.ApiClient, namespace: str
) -> None:
    """The real HPA controller scales the ModelService through its scale subresource; when
    the count changes mid-rollout both Deployments follow it, split by the step's weight."""
    create_version(api, namespace, "digits-v1")
    create_version(api, namespace, "digits-v2")
    create_service(
        api, namespace,
        autoscaling={"minReplicas": 2, "maxReplicas": 8, "metric": "cpu", "target": 70},
        rollout={"steps": [{"weight": 50, "pause": "1h"}], "analysis": {"enabled": False}},
    )  # fmt: skip
    wait_for(api, namespace, "Ready", "True", timeout=90)
    hpas = client.AutoscalingV2Api(api)
    # The HPA controller reads the scale (created at its default 1) and raises it to
    # minReplicas: proof that it can get and update the ModelService's scale.
    eventually(lambda: scale(api, namespace)["spec"].get("replicas") == 2, 60, what="HPA at min")
    able = eventually(  # the controller writes the scale before the HPA's own status
        lambda: next(
            (
                c
                for c in hpas.read_namespaced_horizontal_pod_autoscaler(
                    "digits", namespace
                ).status.conditions
                or ()
                if c.type == "AbleToScale"
            ),
            None,
        ),
        30,
        what="the HPA's AbleToScale condition",
    )
    assert able.status == "True", able.message
    assert scale(api, namespace)["status"] == {
        "replicas": 2,
        "selector": "serving.conch.dev/service=digits",
    }
    v1, v2 = (version_child_name("digits", v) for v in ("digits-v1", "digits-v2"))

    def replicas() -> dict[str, int]:
        items = client.AppsV1Api(api).list_namespaced_deployment(namespace).items
        return {d.metadata.name: d.spec.replicas for d in items}

    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "modelservices",
        "digits",
        {"spec": {"modelVersion": "digits-v2"}},
    )
    eventually(lambda: replicas() == {v1: 1, v2: 1}, 60, what="the 50% step's split of 2")
    eventually(
        lambda: get_service(api, namespace)["status"].get("stepStartedAt"), 60, what="step held"
    )
    scale(api, namespace, 6)  # what the HPA writes when the load grows
    eventually(lambda: replicas() == {v1: 3, v2: 3}, 60, what="both versions follow 6")
    scale(api, namespace, 4)
    eventually(lambda: replicas() == {v1: 2, v2: 2}, 60, what="both versions follow 4")
    status = get_service(api, namespace)["status"]
    assert status["phase"] == "Progressing" and status["canary"]["version"] == "digits-v2"
    eventually(lambda: scale(api, namespace)["status"].get("replicas") == 4, 60, what="pods")
