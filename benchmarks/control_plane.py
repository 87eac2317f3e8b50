"""Control-plane benchmark: N ModelServices applied -> all Ready, against the API server's ceiling.

Both runs happen in one process on one fresh local control plane:

- ceiling: a plain client server-side-applies the same child objects the operator would own
  (Service, Deployment, PodDisruptionBudget, NetworkPolicy per service, same concurrency) and
  waits until every Deployment has a ready replica;
- conch: N ModelServices are created and the operator takes them to Ready.

Printed: wall time of each and their ratio, p50/p99 from ModelService create to its
Deployment existing, and the operator's peak RSS. Absolute times depend on the machine;
the ratio is the figure to compare.

    python benchmarks/control_plane.py --n 200
"""

from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

from conch import builders
from conch.api import ModelService, ModelVersion
from conch.builders import Capabilities, PodSettings
from conch.dev.cluster import DEFAULT_NODES, Cluster
from conch.dev.operator import OperatorProcess
from conch.dev.toolchain import ensure_toolchain
from conch.kube import Kube

ROOT = Path(__file__).resolve().parent.parent
GROUP, VERSION = "serving.conch.dev", "v1alpha1"
WORKERS = 8


def version_body() -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelVersion",
        "metadata": {"name": "bench-v1"},
        "spec": {
            "model": "bench",
            "version": "1",
            "format": "python",
            "source": {"uri": "https://models.example.com/bench.tar", "sha256": "0" * 64},
            "signature": {
                "maxBatchSize": 8,
                "inputs": [{"name": "x", "dataType": "TYPE_FP32", "dims": [4]}],
                "outputs": [{"name": "y", "dataType": "TYPE_FP32", "dims": [1]}],
            },
        },
    }


def service_body(i: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelService",
        "metadata": {"name": f"svc-{i:04d}"},
        "spec": {"modelVersion": "bench-v1", "replicas": 1, "resources": {"gpus": 0}},
    }


def namespace(api: client.ApiClient, name: str) -> None:
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    while not core.list_namespaced_service_account(name).items:
        time.sleep(0.2)


class DeploymentClock:
    """Watches Deployments in a namespace; records when each first appears and becomes ready."""

    def __init__(self, api: client.ApiClient, ns: str) -> None:
        self.present: dict[str, float] = {}
        self.ready: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(api, ns), daemon=True)
        self._thread.start()

    def _run(self, api: client.ApiClient, ns: str) -> None:
        apps = client.AppsV1Api(api)
        while not self._stop.is_set():
            try:
                self._watch_once(apps, ns)
            except Exception:
                if self._stop.is_set():
                    return  # the control plane is going away with the benchmark
                raise

    def _watch_once(self, apps: client.AppsV1Api, ns: str) -> None:
        w = watch.Watch()
        for event in w.stream(apps.list_namespaced_deployment, ns, timeout_seconds=5):
            dep = event["object"]
            owner = dep.metadata.labels.get("serving.conch.dev/service", dep.metadata.name)
            now = time.monotonic()
            self.present.setdefault(owner, now)
            if (dep.status.ready_replicas or 0) >= 1:
                self.ready.setdefault(owner, now)
            if self._stop.is_set():
                w.stop()

    def wait_ready(self, n: int, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while len(self.ready) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.ready)}/{n} ready after {timeout}s")
            time.sleep(0.1)
        return time.monotonic()

    def stop(self) -> None:
        self._stop.set()


def ceiling_run(api: client.ApiClient, kube: Kube, n: int) -> float:
    """A plain client applying the same child objects: the API server + controllers' pace."""
    ns = "bench-ceiling"
    namespace(api, ns)
    mv = ModelVersion.model_validate(
        version_body() | {"metadata": {"name": "bench-v1", "namespace": ns}}
    )
    manifests: list[list[dict[str, Any]]] = []
    for i in range(n):
        raw = service_body(i)
        raw["metadata"] |= {"namespace": ns, "uid": "none"}
        objs = builders.single(ModelService.model_validate(raw), mv, PodSettings(), Capabilities())
        for obj in objs:
            obj["metadata"].pop("ownerReferences")
        manifests.append(objs)
    clock = DeploymentClock(api, ns)
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(lambda objs: [kube.apply(o) for o in objs], manifests))
    done = clock.wait_ready(n, timeout=600)
    clock.stop()
    return done - start


def operator_run(
    api: client.ApiClient, n: int, kubeconfig: Path, log: Path
) -> tuple[float, list[float], int]:
    ns = "bench-conch"
    namespace(api, ns)
    objects = client.CustomObjectsApi(api)
    objects.create_namespaced_custom_object(GROUP, VERSION, ns, "modelversions", version_body())
    operator = OperatorProcess(kubeconfig, log, "--namespace", ns).start()
    try:
        clock = DeploymentClock(api, ns)
        created: dict[str, float] = {}

        def create(i: int) -> None:
            body = service_body(i)
            created[body["metadata"]["name"]] = time.monotonic()
            objects.create_namespaced_custom_object(GROUP, VERSION, ns, "modelservices", body)

        start = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(create, range(n)))
        all_ready = wait_all_ready(objects, ns, n, timeout=900)
        clock.stop()
        latencies = sorted(clock.present[name] - t for name, t in created.items())
        assert operator.proc is not None
        rss_kib = peak_rss_kib(operator.proc.pid)
    finally:
        operator.stop()
    return all_ready - start, latencies, rss_kib


def wait_all_ready(objects: client.CustomObjectsApi, ns: str, n: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = objects.list_namespaced_custom_object(GROUP, VERSION, ns, "modelservices")["items"]
        ready = sum(
            1
            for item in items
            for c in item.get("status", {}).get("conditions", [])
            if c["type"] == "Ready" and c["status"] == "True"
        )
        if ready >= n:
            return time.monotonic()
        time.sleep(0.5)
    raise TimeoutError(f"not all {n} ModelServices Ready after {timeout}s")


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def percentile(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]
        if len(values) > 1
        else values[0]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="ModelServices to create")
    args = parser.parse_args()
    toolchain = ensure_toolchain()
    with tempfile.TemporaryDirectory(prefix="conch-bench-") as tmp:
        cluster = Cluster(Path(tmp) / "cluster")
        # room for both runs' pods (CPU-only services land on the untainted nodes)
        nodes = tuple(replace(n, pods=1000) for n in DEFAULT_NODES)
        cluster.start(toolchain, nodes)
        try:
            cluster.install_crds(toolchain, ROOT / "crds")
            api = config.new_client_from_config(str(cluster.kubeconfig))
            api.configuration.connection_pool_maxsize = WORKERS * 2
            ceiling = ceiling_run(api, Kube(api), args.n)
            conch, latencies, rss = operator_run(
                api, args.n, cluster.kubeconfig, Path(tmp) / "operator.log"
            )
        finally:
            cluster.stop()
    print(f"control plane benchmark: {args.n} ModelServices on a local kube-apiserver + kwok")
    print(f"  plain client, same child objects (ceiling): {ceiling:7.1f} s to all ready")
    print(f"  conch operator:                             {conch:7.1f} s to all Ready")
    print(f"  ratio operator / ceiling:                   {conch / ceiling:7.2f}x")
    print(
        f"  create -> Deployment present: p50 {percentile(latencies, 50):.2f} s, "
        f"p99 {percentile(latencies, 99):.2f} s"
    )
    print(f"  operator peak RSS: {rss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
