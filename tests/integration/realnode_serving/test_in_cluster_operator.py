"""The operator in-cluster, as users run it: its image (the images recipe, imported into the
real node), installed by a real `helm install` of charts/conch with the dev sandbox's
values (conch.dev.incluster: the node's network, the API server on its loopback address),
Ready from kubelet's probes, reconciling a ModelService (served on the kwok CPU node, which
is cheap), then `helm uninstall`. The package's operator process is stopped meanwhile, so
only the pod can have done the work; its Events name the pod.
"""

from __future__ import annotations

import time
import urllib.request
import uuid
from pathlib import Path

import yaml
from kubernetes import client

from conch.builders.meta import SERVICE_LABEL
from conch.dev import imagebuild
from conch.dev.imagebuild import Built
from conch.dev.incluster import sandbox_values
from conch.dev.nodeconfig import NODE_NAME
from conch.dev.operator import OperatorProcess
from conch.dev.process import free_port
from conch.dev.toolchain import Toolchain
from conch.kube import REPORTING_CONTROLLER
from tests.integration.helm import CHART, Helm
from tests.integration.realnode import NodeCluster, describe_pod, namespace, wait_ready
from tests.support import GROUP, VERSION, create_service, create_version, eventually, wait_for

SERVED = {"gpus": 0, "cpu": "250m", "memory": "1Gi"}  # lands on the kwok node cpu-0


def _operator_events(core: client.CoreV1Api, ns: str) -> list[client.CoreV1Event]:
    """The operator's Events (events.k8s.io, read through core/v1: the client's
    events.k8s.io model refuses the components' Events that carry no eventTime)."""
    return [
        e
        for e in core.list_namespaced_event(ns).items
        if e.reporting_component == REPORTING_CONTROLLER
    ]


def _operator_image_in_node(real: NodeCluster) -> Built:
    """The images recipe's operator image (cached by key: a source change rebuilds only its
    conch layer), imported into the node."""
    began = time.monotonic()
    (image,) = imagebuild.build(["operator"])
    built_s = time.monotonic() - began
    assert image.reference in real.cluster.import_images([Path(image.archive)])
    print(
        f"\noperator image {image.compressed_bytes / 1e6:.1f} MB compressed, built in"
        f" {built_s:.1f} s, imported in {time.monotonic() - began - built_s:.1f} s"
    )
    return image


def _assert_reconciled_by(real: NodeCluster, ns: str, pod: str, metrics_port: int) -> None:
    """The ModelService in `ns` is Ready and observed, the Events about it name the operator
    pod, and the pod serves its metrics on the node's loopback (the host's, here)."""
    api = real.core.api_client
    wait_for(api, ns, "Ready", "True", timeout=120)
    status = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, ns, "modelservices", "digits"
    )["status"]
    assert status["observedGeneration"] == 1
    posted = eventually(lambda: _operator_events(real.core, ns), what="an Event from the operator")
    assert {e.reporting_instance for e in posted} == {pod}
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        assert "conch_reconcile_total{" in response.read().decode()


def test_operator_runs_in_cluster_from_its_image_through_helm(
    real: NodeCluster, operator: OperatorProcess, toolchain: Toolchain, tmp_path: Path
) -> None:
    image = _operator_image_in_node(real)
    api = real.core.api_client
    apps = client.AppsV1Api(api)
    metrics_port, health_port = free_port(), free_port()
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            sandbox_values(image.reference, real.cluster.api_port, metrics_port, health_port)
        )
    )
    # the operator's namespace runs a hostNetwork pod: no Pod Security level enforced there
    system = f"conch-{uuid.uuid4().hex[:6]}"
    real.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=system)))
    workload = namespace(real)  # enforce=restricted
    helm = Helm(toolchain.binary("helm"), tmp_path / "helm", real.cluster.kubeconfig)
    release = "conch"
    selector = f"app.kubernetes.io/instance={release}"

    operator.stop()  # from here only the in-cluster operator can reconcile
    try:
        create_version(api, workload)
        create_service(api, workload, resources=SERVED, autoscaling=None)
        began = time.monotonic()
        helm.ok("install", release, str(CHART), f"--namespace={system}", f"--values={values}")
        (pod,) = eventually(
            lambda: real.core.list_namespaced_pod(system, label_selector=selector).items,
            what="the operator pod",
        )
        children = f"{SERVICE_LABEL}=digits"
        try:  # it reconciles as it starts, before kubelet's readiness probe passes
            (deployment,) = eventually(
                lambda: apps.list_namespaced_deployment(workload, label_selector=children).items,
                timeout=120,
                what="the served Deployment, written by the in-cluster operator",
            )
        except AssertionError as late:
            late.add_note(describe_pod(real, system, pod.metadata.name))
            raise
        reconciled_s = time.monotonic() - began
        pod = wait_ready(real, system, pod.metadata.name, timeout=120)
        ready_s = time.monotonic() - began
        assert (pod.spec.node_name, pod.spec.host_network) == (NODE_NAME, True)
        (c,) = pod.status.container_statuses
        assert c.image.endswith(image.reference.rsplit("/", 1)[-1]) and c.restart_count == 0
        (owner,) = deployment.metadata.owner_references
        assert (owner.kind, owner.name, owner.controller) == ("ModelService", "digits", True)
        _assert_reconciled_by(real, workload, pod.metadata.name, metrics_port)
        print(
            f"\nhelm install -> first reconcile (the Deployment written) {reconciled_s:.1f} s,"
            f" -> operator Ready {ready_s:.1f} s"
        )
    finally:
        helm.run("uninstall", release, f"--namespace={system}", "--wait", "--timeout=120s")
        operator.start()
    eventually(
        lambda: not real.core.list_namespaced_pod(system, label_selector=selector).items,
        what="the operator pod gone after helm uninstall",
    )
    for ns in (system, workload):
        real.core.delete_namespace(ns)
