"""Progressive rollouts end to end, on real parts: the local control plane, the operator, a
real Prometheus scraping real Triton processes that stand behind the stable and canary
pods, and a bounded load loop on loopback that splits traffic by the weight Conch reports.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from conch.builders.meta import version_child_name
from conch.dev.cluster import Cluster
from conch.dev.operator import OperatorProcess
from conch.dev.prometheus import PrometheusProcess
from conch.dev.traffic import Backends, Split, Traffic
from tests.support import (
    GROUP,
    VERSION,
    create_service,
    create_version,
    eventually,
    get_service,
    stays,
)

pytestmark = pytest.mark.integration

FAST_ROLLOUT = {
    "steps": [{"weight": 30, "pause": "4s"}, {"weight": 60, "pause": "4s"}],
    "analysis": {
        "interval": "4s",
        "maxErrorRate": 0.05,
        "maxP99LatencyMs": 150,
        "minRequests": 5,
        "failureLimit": 1,
    },
}


@pytest.fixture(scope="module")
def analysing_operator(
    cluster: Cluster,
    operator: OperatorProcess,
    prometheus: PrometheusProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    """The operator, analysing rollouts through this module's Prometheus."""
    operator.stop()
    log = tmp_path_factory.mktemp("rollout-operator") / "operator.log"
    proc = OperatorProcess(
        cluster.kubeconfig, log, "--all-namespaces", f"--prometheus-url={prometheus.url}"
    ).start()
    try:
        yield proc
    finally:
        proc.stop()
        operator.start()


def traffic(api: client.ApiClient, namespace: str, backends: Backends) -> Traffic:
    def split() -> Split:
        status = get_service(api, namespace).get("status", {})
        canary = status.get("canary") or {}
        stable = (status.get("stable") or {}).get("version")
        return stable, canary.get("version"), int(canary.get("weight", 0))

    return Traffic(backends, split)


def phase(api: client.ApiClient, ns: str) -> dict[str, Any]:
    return dict(get_service(api, ns).get("status", {}))


def promoted(api: client.ApiClient, ns: str, what: str) -> dict[str, Any]:
    """Wait until digits-v2 is the stable version at 100%; the status then."""

    def done() -> dict[str, Any] | None:
        s = phase(api, ns)
        return s if s.get("phase") == "Stable" and s["stable"]["version"] == "digits-v2" else None

    return eventually(done, 120, what=what)


def start_rollout(api: client.ApiClient, ns: str, to: str) -> None:
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP, VERSION, ns, "modelservices", "digits", {"spec": {"modelVersion": to}}
    )


def deployment_replicas(api: client.ApiClient, ns: str) -> dict[str, int]:
    items = client.AppsV1Api(api).list_namespaced_deployment(ns).items
    return {d.metadata.labels["serving.conch.dev/version"]: d.spec.replicas for d in items}


def reasons_of_events(api: client.ApiClient, ns: str) -> list[str]:
    items = client.CoreV1Api(api).list_namespaced_event(ns).items
    return [e.reason for e in items if e.involved_object.kind == "ModelService"]


@pytest.fixture
def serving(
    api: client.ApiClient,
    namespace: str,
    prometheus: PrometheusProcess,
    analysing_operator: OperatorProcess,
) -> Iterator[Callable[..., Backends]]:
    """digits-v1 serving and Ready, its Triton up; returns a starter for the canary's."""
    backends = Backends(prometheus, namespace, "digits")

    def setup(router: str = "replicas", **canary: float) -> Backends:
        create_version(api, namespace, "digits-v1")
        create_version(api, namespace, "digits-v2")
        rollout: dict[str, Any] = dict(FAST_ROLLOUT, router=router)
        if router == "gatewayAPI":
            rollout["gatewayRef"] = {"name": "public"}
        create_service(
            api, namespace, autoscaling=None, replicas=2, resources={"gpus": 1}, rollout=rollout
        )
        eventually(lambda: phase(api, namespace).get("phase") == "Stable", 90, what="Stable")
        backends.start("digits-v1")
        backends.start("digits-v2", **canary)
        return backends

    try:
        yield setup
    finally:
        backends.stop()


def test_good_canary_is_promoted(
    api: client.ApiClient,
    namespace: str,
    serving: Callable[..., Backends],
    analysing_operator: OperatorProcess,
) -> None:
    backends = serving()
    with traffic(api, namespace, backends) as load:
        start_rollout(api, namespace, "digits-v2")
        eventually(lambda: phase(api, namespace).get("phase") == "Progressing", 30, what="start")
        done = promoted(api, namespace, what="promotion")
    assert done["rolloutHistory"][-1]["result"] == "Promoted"
    assert done["lastAnalysis"]["verdict"] == "Passed"
    assert "canary" not in done or done["canary"] is None or done["canary"]["weight"] == 0
    eventually(
        lambda: deployment_replicas(api, namespace).get("digits-v1", 0) == 0,
        30,
        what="v1 scaled away",
    )
    assert load.count("digits-v2", ok=True) > 0
    eventually(  # Events are posted off the reconcile path, soon after status says so
        lambda: {"RolloutStarted", "Promoted"} <= set(reasons_of_events(api, namespace)),
        30,
        what="the RolloutStarted and Promoted Events",
    )
    assert 'conch_rollout_analyses_total{verdict="Passed"}' in analysing_operator.metrics()
    cond = {c["type"]: c for c in done["conditions"]}
    assert cond["Ready"]["status"] == "True"


@pytest.mark.parametrize(
    ("canary", "check"),
    [
        pytest.param({"failure_rate": 0.5}, "error rate", id="failing"),
        pytest.param({"delay_ms": 400}, "p99 latency", id="slow"),
    ],
)
def test_bad_canary_is_rolled_back(
    api: client.ApiClient,
    namespace: str,
    serving: Callable[..., Backends],
    canary: dict[str, float],
    check: str,
) -> None:
    backends = serving(**canary)
    with traffic(api, namespace, backends):
        start_rollout(api, namespace, "digits-v2")
        done = eventually(
            lambda: (s := phase(api, namespace)).get("phase") == "RolledBack" and s,
            120,
            what="rollback",
        )
    cond = {c["type"]: c for c in done["conditions"]}
    assert cond["Degraded"]["status"] == "True"
    assert cond["Degraded"]["reason"] == "AnalysisFailed"
    assert check in done["lastAnalysis"]["message"]
    assert done["stable"]["version"] == "digits-v1" and done["stable"]["weight"] == 100
    assert done["canary"]["weight"] == 0
    eventually(
        lambda: deployment_replicas(api, namespace).get("digits-v2", 0) == 0,
        30,
        what="v2 scaled to zero",
    )
    assert done["rolloutHistory"][-1]["result"] == "RolledBack"
    eventually(
        lambda: "RolledBack" in reasons_of_events(api, namespace), 30, what="a RolledBack Event"
    )


def test_rollout_survives_an_operator_kill(
    api: client.ApiClient,
    namespace: str,
    serving: Callable[..., Backends],
    analysing_operator: OperatorProcess,
) -> None:
    backends = serving()
    with traffic(api, namespace, backends):
        start_rollout(api, namespace, "digits-v2")
        started = eventually(
            lambda: (s := phase(api, namespace)).get("stepStartedAt") and s, 60, what="a step"
        )
        analysing_operator.stop(signal.SIGKILL)
        analysing_operator.start()
        done = promoted(api, namespace, what="promotion after restart")
    assert done["rolloutHistory"][-1]["startedAt"] == started["rolloutStartedAt"]
    eventually(lambda: "RolloutStarted" in reasons_of_events(api, namespace), 30, what="Event")
    assert reasons_of_events(api, namespace).count("RolloutStarted") == 1  # not again
    names = [
        d.metadata.name for d in client.AppsV1Api(api).list_namespaced_deployment(namespace).items
    ]
    assert len(names) == len(set(names)) <= 2


def test_gateway_api_router_sets_route_weights(
    api: client.ApiClient, namespace: str, serving: Callable[..., Backends]
) -> None:
    backends = serving(router="gatewayAPI")
    objects = client.CustomObjectsApi(api)

    def route_weights() -> dict[str, int]:
        route = objects.get_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", namespace, "httproutes", "digits"
        )
        refs = route["spec"]["rules"][0]["backendRefs"]
        return {r["name"]: r.get("weight", 1) for r in refs}

    assert route_weights() == {version_child_name("digits", "digits-v1"): 100}
    with traffic(api, namespace, backends):
        start_rollout(api, namespace, "digits-v2")
        eventually(
            lambda: (
                route_weights()
                == {
                    version_child_name("digits", "digits-v1"): 70,
                    version_child_name("digits", "digits-v2"): 30,
                }
            ),
            60,
            what="first step on the route",
        )
        eventually(
            lambda: (
                phase(api, namespace).get("phase") == "Stable"
                and route_weights() == {version_child_name("digits", "digits-v2"): 100}
            ),
            120,
            what="promotion on the route",
        )
    services = client.CoreV1Api(api).list_namespaced_service(namespace).items
    assert {s.metadata.name for s in services} == {
        "digits",
        version_child_name("digits", "digits-v2"),
    }


def annotate(api: client.ApiClient, ns: str, key: str) -> None:
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP, VERSION, ns, "modelservices", "digits", {"metadata": {"annotations": {key: "now"}}}
    )


def test_pause_holds_the_step_and_resume_finishes(
    api: client.ApiClient, namespace: str, serving: Callable[..., Backends]
) -> None:
    backends = serving()
    objects = client.CustomObjectsApi(api)
    with traffic(api, namespace, backends):
        start_rollout(api, namespace, "digits-v2")
        eventually(lambda: phase(api, namespace).get("stepStartedAt"), 60, what="a step")
        objects.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "modelservices",
            "digits",
            {"spec": {"rollout": {"paused": True}}},
        )
        held = eventually(
            lambda: (s := phase(api, namespace)).get("phase") == "Paused" and s, 30, what="Paused"
        )
        stays(  # two analysis intervals: a paused rollout does not move
            lambda: (s := phase(api, namespace))["phase"] == "Paused" and s["step"] == held["step"],
            10,
            what="the paused step",
        )
        objects.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "modelservices",
            "digits",
            {"spec": {"rollout": {"paused": False}}},
        )
        promoted(api, namespace, what="promotion after resume")


def test_abort_and_retry_annotations(
    api: client.ApiClient, namespace: str, serving: Callable[..., Backends]
) -> None:
    backends = serving()
    with traffic(api, namespace, backends):
        start_rollout(api, namespace, "digits-v2")
        eventually(lambda: phase(api, namespace).get("stepStartedAt"), 60, what="a step")
        annotate(api, namespace, "serving.conch.dev/abort")
        aborted = eventually(
            lambda: (s := phase(api, namespace)).get("phase") == "RolledBack" and s,
            60,
            what="abort",
        )
        assert aborted["rollbackReason"] == "Aborted"
        annotations = get_service(api, namespace)["metadata"].get("annotations") or {}
        assert "serving.conch.dev/abort" not in annotations  # consumed
        annotate(api, namespace, "serving.conch.dev/retry")
        promoted(api, namespace, what="promotion after retry")


def test_canary_waits_for_gpus_instead_of_failing(
    api: client.ApiClient, namespace: str, analysing_operator: OperatorProcess
) -> None:
    """Two replicas of 4 GPUs fill both A100 nodes: the canary's pod cannot be placed, and
    the rollout waits with the scheduler's reason rather than failing or rolling back."""
    create_version(api, namespace, "digits-v1")
    create_version(api, namespace, "digits-v2")
    create_service(
        api, namespace, autoscaling=None, replicas=2,
        resources={"gpus": 4, "gpuProduct": "NVIDIA-A100-SXM4-80GB"}, rollout=FAST_ROLLOUT,
    )  # fmt: skip
    eventually(lambda: phase(api, namespace).get("phase") == "Stable", 90, what="Stable")
    start_rollout(api, namespace, "digits-v2")

    def waiting() -> dict[str, Any] | None:
        cond = {c["type"]: c for c in phase(api, namespace).get("conditions", [])}
        progressing = cond.get("Progressing", {})
        return progressing if progressing.get("reason") == "InsufficientGPU" else None

    cond = eventually(waiting, 60, what="Progressing=InsufficientGPU")
    assert "Insufficient nvidia.com/gpu" in cond["message"]
    stays(
        lambda: (
            phase(api, namespace)["phase"] == "Progressing"
            and phase(api, namespace)["stable"]["version"] == "digits-v1"
        ),
        8,
        what="the waiting rollout",
    )
    ready = {c["type"]: c for c in phase(api, namespace)["conditions"]}["Ready"]
    assert ready["status"] == "True"  # the stable version still serves


def test_accuracy_gate_refuses_a_worse_version(
    api: client.ApiClient, namespace: str, analysing_operator: OperatorProcess
) -> None:
    create_version(api, namespace, "digits-v1")
    create_version(api, namespace, "digits-v2", accuracy=0.90)  # baseline 0.972: 7 points lost
    rollout = dict(FAST_ROLLOUT, maxAccuracyDrop=0.01)
    create_service(
        api, namespace, autoscaling=None, replicas=1, resources={"gpus": 1}, rollout=rollout
    )
    eventually(lambda: phase(api, namespace).get("phase") == "Stable", 90, what="Stable")
    start_rollout(api, namespace, "digits-v2")

    def refused() -> dict[str, Any] | None:
        for cond in phase(api, namespace).get("conditions", []):
            if cond["reason"] == "AccuracyGateFailed":
                return dict(cond)
        return None

    cond = eventually(refused, 30, what="AccuracyGateFailed")
    assert "maxAccuracyDrop" in cond["message"]
    status = phase(api, namespace)
    assert status["phase"] == "Stable" and status["stable"]["version"] == "digits-v1"
    assert "digits-v2" not in deployment_replicas(api, namespace)
