"""Fixtures for tests on a real control plane: etcd, kube-apiserver, controller-manager,
scheduler and kwok on 127.0.0.1, started once per session and stopped by pid at the end."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from conch.dev.cluster import Cluster
from conch.dev.operator import OperatorProcess
from conch.dev.prometheus import PrometheusProcess
from conch.dev.toolchain import Toolchain, ensure_toolchain
from conch.rest import Rest
from tests.support import eventually

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def toolchain() -> Toolchain:
    return ensure_toolchain()


@pytest.fixture(scope="session")
def cluster(toolchain: Toolchain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("control-plane"))
    c.start(toolchain)
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="session")
def api(cluster: Cluster) -> client.ApiClient:
    return config.new_client_from_config(str(cluster.kubeconfig))


@pytest.fixture(scope="session")
def rest(cluster: Cluster) -> Rest:
    """The operator's own client (conch.rest), as the admin user."""
    return cluster.rest()


@pytest.fixture(scope="session")
def kubectl(cluster: Cluster, toolchain: Toolchain) -> Callable[..., str]:
    def run(*args: str) -> str:
        return cluster.kubectl(toolchain, *args)

    return run


@pytest.fixture(scope="session")
def crds(cluster: Cluster, toolchain: Toolchain) -> None:
    """Conch's CRDs plus the third-party ones it writes (HTTPRoute, ServiceMonitor)."""
    cluster.install_crds(toolchain, ROOT / "crds", *toolchain.extra_crds)


@pytest.fixture
def namespace(api: client.ApiClient) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    eventually(
        lambda: (
            core.list_namespaced_service_account(name, field_selector="metadata.name=default").items
        ),
        what="default service account",
    )
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="session")
def operator(
    cluster: Cluster, crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The operator, watching all namespaces, as a child process stopped by pid."""
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    proc = OperatorProcess(cluster.kubeconfig, log).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusProcess]:
    """A real Prometheus on loopback (its targets: `Backends`' real Tritons)."""
    proc = PrometheusProcess(tmp_path_factory.mktemp("prometheus")).start()
    try:
        yield proc
    finally:
        proc.stop()
