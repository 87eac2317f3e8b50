"""Control-plane benchmark: the operator against the API server's own pace, at scale, and in
a busy cluster. One run, one fresh local control plane (kube-apiserver + kwok), every figure
printed as a ratio or against its goal.

1. ceiling vs operator, alternated `--rounds` times at `--n` services: the ceiling is a plain
   client server-side-applying the same child objects the operator would own (same
   concurrency) until every Deployment has a ready replica; the operator run creates N
   ModelServices and waits for all Ready. Printed: median and spread of operator/ceiling
   (the machine is shared and noisy, so one pair of runs says little).
2. create -> Deployment latency when services arrive at a steady `--rate` per second, for
   a plain client applying the same children at that rate (what the API server allows)
   and for the operator, alternated `--rounds` times.
3. operator RSS with `--scale` services, fresh, then after a restart over the existing ones
   (and how long the restart takes to go through them).
4. API requests per reconcile when nothing changed, read from the restarted operator's own
   `conch_reconcile_api_requests` histogram (every reconcile after a restart over Ready
   services changes nothing).
5. operator CPU seconds and RSS over `--window` seconds of an idle cluster, then with
   `--churn` unrelated Deployments (replicas 0) being created and patched in other
   namespaces; the operator watches every namespace here, as a cluster-wide install does.

    python benchmarks/control_plane.py            # the full run (about 15 minutes)
    python benchmarks/control_plane.py --quick    # smaller numbers, a few minutes
    python benchmarks/control_plane.py --only arrivals --arrivals 200   # one figure
"""

from __future__ import annotations

import argparse
import concurrent.futures
import itertools
import math
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kubernetes import client, config
from prometheus_client.parser import text_string_to_metric_families

from conch import builders
from conch.api import ModelService, ModelVersion
from conch.builders import Capabilities, PodSettings
from conch.builders.meta import SERVICE_LABEL
from conch.dev.cluster import DEFAULT_NODES, Cluster
from conch.dev.operator import OperatorProcess
from conch.dev.toolchain import ensure_toolchain
from conch.errors import ConchError
from conch.informer import Informer
from conch.kube import MODEL_SERVICE, OWNED, Kind, Kube
from conch.rest import Rest

ROOT = Path(__file__).resolve().parent.parent
GROUP, VERSION = "serving.conch.dev", "v1alpha1"
WORKERS = 8
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sizes:
    n: int
    rounds: int
    rate: float
    arrivals: int
    scale: int
    churn: int
    window: float


FULL = Sizes(n=200, rounds=3, rate=20, arrivals=200, scale=1000, churn=2000, window=60)
QUICK = Sizes(n=40, rounds=3, rate=20, arrivals=60, scale=150, churn=300, window=15)


def version_body() -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelVersion",
        # shared: its catalog entry lists every service (the mirror's cost at scale)
        "metadata": {"name": "bench-v1", "labels": {"serving.conch.dev/catalog": "shared"}},
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


def namespace(api: client.ApiClient, name: str) -> str:
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    while not core.list_namespaced_service_account(name).items:
        time.sleep(0.2)
    return name


class Clock:
    """When each object of a kind in a namespace first appears and first counts as ready,
    by the service it belongs to. The operator's own list+watch (`conch.informer`): the
    harness shares the machine with what it measures, so it parses each event once and
    re-lists nothing."""

    def __init__(
        self, rest: Rest, kind: Kind, ns: str, ready: Callable[[dict[str, Any]], bool]
    ) -> None:
        self.present: dict[str, float] = {}
        self.ready: dict[str, float] = {}
        self._counts_as_ready = ready
        self._informer = Informer(rest, kind, "", [ns], on_change=self._changed)
        self._informer.start()

    def _changed(self, before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
        if after is None:
            return
        meta = after["metadata"]
        owner = meta.get("labels", {}).get(SERVICE_LABEL, meta["name"])
        now = time.monotonic()
        self.present.setdefault(owner, now)
        if self._counts_as_ready(after):
            self.ready.setdefault(owner, now)

    def wait_ready(self, n: int, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while len(self.ready) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.ready)}/{n} ready after {timeout}s")
            time.sleep(0.1)
        return time.monotonic()

    def stop(self) -> None:
        self._informer.stop()


def deployment_clock(rest: Rest, ns: str) -> Clock:
    """Deployments: ready with one ready replica."""
    return Clock(
        rest,
        OWNED["Deployment"],
        ns,
        lambda d: int((d.get("status") or {}).get("readyReplicas") or 0) >= 1,
    )


def service_clock(rest: Rest, ns: str) -> Clock:
    """ModelServices: ready with condition Ready=True."""

    def ready(svc: dict[str, Any]) -> bool:
        conditions = (svc.get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

    return Clock(rest, MODEL_SERVICE, ns, ready)


class Bench:
    """One local control plane and the clients every measurement shares."""

    def __init__(self, cluster: Cluster, tmp: Path) -> None:
        self.cluster = cluster
        self.tmp = tmp
        self.api = config.new_client_from_config(str(cluster.kubeconfig))
        self.api.configuration.connection_pool_maxsize = WORKERS * 2
        self.kube = Kube(cluster.rest(pool_size=WORKERS * 2))
        self.objects = client.CustomObjectsApi(self.api)
        self.logs = itertools.count()

    def operator(self, *args: str, source: Path | None = None) -> OperatorProcess:
        """`conch operator run`, from this checkout or from `source` (another checkout)."""
        env = {}
        if source is not None:
            env["PYTHONPATH"] = os.pathsep.join(
                str(source / p) for p in ("operator", "runtime", "")
            )
        return OperatorProcess(
            self.cluster.kubeconfig, self.tmp / f"operator-{next(self.logs)}.log", *args, env=env
        ).start()

    def children(self, ns: str, n: int) -> list[list[dict[str, Any]]]:
        """The child objects the operator would own for N services (no owner reference)."""
        namespace(self.api, ns)
        mv = ModelVersion.model_validate(
            version_body() | {"metadata": {"name": "bench-v1", "namespace": ns}}
        )
        manifests: list[list[dict[str, Any]]] = []
        for i in range(n):
            raw = service_body(i)
            raw["metadata"] |= {"namespace": ns, "uid": "none"}
            svc = ModelService.model_validate(raw)
            objs = builders.single(svc, mv, PodSettings(), Capabilities())
            for obj in objs:
                obj["metadata"].pop("ownerReferences")
            manifests.append(objs)
        return manifests

    def ceiling(self, ns: str, n: int) -> float:
        """A plain client applying the same child objects: the API server + controllers' pace."""
        manifests = self.children(ns, n)
        clock = deployment_clock(self.kube.api, ns)
        start = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(lambda objs: [self.kube.apply(o) for o in objs], manifests))
        done = clock.wait_ready(n, timeout=600)
        clock.stop()
        return done - start

    def ceiling_arrivals(self, ns: str, n: int, rate: float) -> list[float]:
        """The same children applied by a plain client as services arrive `rate` per second:
        start of the first apply -> Deployment present (what the API server allows)."""
        manifests = self.children(ns, n)
        clock = deployment_clock(self.kube.api, ns)
        started: dict[str, float] = {}
        start = time.monotonic()

        def arrive(i: int) -> None:
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
            started[service_body(i)["metadata"]["name"]] = time.monotonic()
            # the Deployment first: what is timed; a Service's ClusterIP can take 30 s here
            for obj in sorted(manifests[i], key=lambda o: o["kind"] != "Deployment"):
                try:
                    self.kube.apply(obj)
                except ConchError as error:  # an overloaded API server times out: counted
                    print(f"    ceiling: {error}", file=sys.stderr)  # as a missing Deployment

        with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(arrive, range(n)))
        deadline = time.monotonic() + 300
        while len(clock.present) < n and time.monotonic() < deadline:
            time.sleep(0.2)
        clock.stop()
        return sorted(clock.present.get(name, math.inf) - t for name, t in started.items())

    def create_services(
        self, ns: str, indices: range, pace: Callable[[int], None] | None = None
    ) -> dict[str, float]:
        """Create ModelServices (paced when asked); returns name -> create time."""
        created: dict[str, float] = {}

        def create(i: int) -> None:
            if pace is not None:
                pace(i)
            body = service_body(i)
            created[body["metadata"]["name"]] = time.monotonic()
            self.objects.create_namespaced_custom_object(GROUP, VERSION, ns, "modelservices", body)

        with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(create, indices))
        return created

    def version(self, ns: str) -> None:
        self.objects.create_namespaced_custom_object(
            GROUP, VERSION, ns, "modelversions", version_body()
        )

    def conch(self, ns: str, n: int) -> float:
        """The operator taking N ModelServices, created at once, to Ready."""
        namespace(self.api, ns)
        self.version(ns)
        operator = self.operator("--namespace", ns)
        clock = service_clock(self.kube.api, ns)
        try:
            start = time.monotonic()
            self.create_services(ns, range(n))
            return clock.wait_ready(n, timeout=900) - start
        finally:
            clock.stop()
            operator.stop()

    def arrivals(
        self, ns: str, n: int, rate: float, source: Path | None = None
    ) -> tuple[list[float], RequestTimes]:
        """create -> Deployment present for services arriving `rate` per second (a service
        whose Deployment never came within 300 s of the last arrival counts as infinite),
        and the operator's own API request times."""
        namespace(self.api, ns)
        self.version(ns)
        operator = self.operator("--namespace", ns, source=source)
        try:
            clock = deployment_clock(self.kube.api, ns)
            start = time.monotonic()

            def pace(i: int) -> None:
                time.sleep(max(0.0, start + i / rate - time.monotonic()))

            created = self.create_services(ns, range(n), pace)
            deadline = time.monotonic() + 300
            while len(clock.present) < n and time.monotonic() < deadline:
                time.sleep(0.2)
            clock.stop()
            times = request_times(operator)
        finally:
            operator.stop()
        return sorted(clock.present.get(name, math.inf) - t for name, t in created.items()), times


@dataclass(frozen=True)
class Histogram:
    count: float
    total: float
    at_most: dict[float, float]
    """upper bound -> observations at or below it"""

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def share_at_most(self, bound: float) -> float:
        return self.at_most.get(bound, 0.0) / self.count if self.count else 0.0


@dataclass(frozen=True)
class Scale:
    fresh_mib: float
    fresh_seconds: float
    restart_mib: float
    restart_seconds: float
    reads: Histogram
    writes: Histogram
    version_reads: Histogram
    version_writes: Histogram


def scale_run(bench: Bench, ns: str, n: int) -> Scale:
    namespace(bench.api, ns)
    bench.version(ns)
    operator = bench.operator("--namespace", ns)
    clock = service_clock(bench.kube.api, ns)
    try:
        start = time.monotonic()
        bench.create_services(ns, range(n))
        fresh_seconds = clock.wait_ready(n, timeout=1800) - start
        assert operator.proc is not None
        fresh = peak_rss_kib(operator.proc.pid) / 1024
    finally:
        clock.stop()
        operator.stop()
    start = time.monotonic()
    operator = bench.operator("--namespace", ns)
    try:
        # through all of them: every service reconciled once and reported Ready
        while not (
            reconciles(operator) >= n and gauge(operator, "conch_modelservices", "True") >= n
        ):
            if time.monotonic() - start > 900:
                raise TimeoutError(f"restarted operator: {reconciles(operator)}/{n} reconciles")
            time.sleep(0.5)
        restart_seconds = time.monotonic() - start
        assert operator.proc is not None
        restarted = peak_rss_kib(operator.proc.pid) / 1024
        reads = histogram(operator, "conch_reconcile_api_requests", "read")
        writes = histogram(operator, "conch_reconcile_api_requests", "write")
        version_reads = histogram(operator, "conch_version_reconcile_api_requests", "read")
        version_writes = histogram(operator, "conch_version_reconcile_api_requests", "write")
    finally:
        operator.stop()
    return Scale(
        fresh, fresh_seconds, restarted, restart_seconds, reads, writes, version_reads,
        version_writes,
    )  # fmt: skip


@dataclass(frozen=True)
class Usage:
    cpu_seconds: float
    rss_mib: float


def busy_run(bench: Bench, churn: int, window: float, services: int) -> tuple[Usage, Usage]:
    """An operator on every namespace: idle for `window`, then for `window` while `churn`
    Deployments of someone else's are created and patched in other namespaces."""
    ns = namespace(bench.api, "bench-busy")
    bench.version(ns)
    operator = bench.operator("--all-namespaces")
    clock = service_clock(bench.kube.api, ns)
    try:
        bench.create_services(ns, range(services))
        clock.wait_ready(services, timeout=600)
        clock.stop()
        settle(operator)
        assert operator.proc is not None
        pid = operator.proc.pid
        before = cpu_seconds(pid)
        time.sleep(window)
        idle = Usage(cpu_seconds(pid) - before, rss_kib(pid) / 1024)
        teams = [namespace(bench.api, f"team-{t}") for t in range(10)]
        apps = client.AppsV1Api(bench.api)
        deployments = [(teams[i % len(teams)], f"app-{i:05d}") for i in range(churn)]
        stop = threading.Event()
        before = cpu_seconds(pid)
        started = time.monotonic()
        churner = threading.Thread(target=churn_loop, args=(apps, deployments, stop))
        churner.start()
        time.sleep(max(0.0, window - (time.monotonic() - started)))
        busy = Usage(cpu_seconds(pid) - before, rss_kib(pid) / 1024)
        stop.set()
        churner.join()
    finally:
        operator.stop()
    return idle, busy


def churn_loop(
    apps: client.AppsV1Api, deployments: list[tuple[str, str]], stop: threading.Event
) -> None:
    """Create every Deployment (replicas 0: no pods, bounded load), then patch them in turn."""

    def create(item: tuple[str, str]) -> None:
        ns, name = item
        labels = {"app": name}
        body = {
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "app", "image": "example.com/app:1"}]},
                },
            },
        }
        if not stop.is_set():
            apps.create_namespaced_deployment(ns, body)

    def touch(item: tuple[str, str], generation: int) -> None:
        ns, name = item
        patch = {"metadata": {"annotations": {"example.com/generation": str(generation)}}}
        if not stop.is_set():
            apps.patch_namespaced_deployment(name, ns, patch)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(create, deployments))
        for generation in itertools.count(1):
            if stop.is_set():
                return
            list(pool.map(touch, deployments, itertools.repeat(generation)))


def settle(operator: OperatorProcess, quiet: float = 10, timeout: float = 600) -> None:
    """Wait until the operator has gone `quiet` seconds without a reconcile."""
    deadline = time.monotonic() + timeout
    last, since = -1.0, time.monotonic()
    while time.monotonic() < deadline:
        count = reconciles(operator)
        if count != last:
            last, since = count, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(1)
    raise TimeoutError("the operator kept reconciling")


def samples(operator: OperatorProcess) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(operator.metrics())
        for s in family.samples
    ]


def reconciles(operator: OperatorProcess) -> float:
    return sum(v for name, _, v in samples(operator) if name == "conch_reconcile_total")


def gauge(operator: OperatorProcess, name: str, status: str) -> float:
    return sum(
        v for n, labels, v in samples(operator) if n == name and labels.get("status") == status
    )


def histogram(operator: OperatorProcess, name: str, kind: str) -> Histogram:
    found = [(n, labels, v) for n, labels, v in samples(operator) if labels.get("kind") == kind]
    return Histogram(
        count=sum(v for n, _, v in found if n == f"{name}_count"),
        total=sum(v for n, _, v in found if n == f"{name}_sum"),
        at_most={float(lb["le"]): v for n, lb, v in found if n == f"{name}_bucket"},
    )


RequestTimes = dict[str, tuple[float, float]]
"""'verb resource' -> (requests, seconds spent in them)"""


def request_times(operator: OperatorProcess) -> RequestTimes:
    """The operator's conch_kubernetes_api_request_duration_seconds, by verb and resource."""
    name = "conch_kubernetes_api_request_duration_seconds"
    out: dict[str, tuple[float, float]] = {}
    for n, labels, value in samples(operator):
        if n in (f"{name}_count", f"{name}_sum"):
            key = f"{labels['verb']} {labels['resource']}"
            count, total = out.get(key, (0.0, 0.0))
            out[key] = (count + value, total) if n.endswith("_count") else (count, total + value)
    return out


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def peak_rss_kib(pid: int) -> int:
    return status_kib(pid, "VmHWM")


def rss_kib(pid: int) -> int:
    return status_kib(pid, "VmRSS")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


NEVER = 1e9
"""Stands in for an infinite value while interpolating (inf * 0 would be nan)."""


def percentile(values: list[float], q: float) -> float:
    finite = [min(v, NEVER) for v in values]
    found = (
        statistics.quantiles(finite, n=100, method="inclusive")[int(q) - 1]
        if len(finite) > 1
        else finite[0]
    )
    return math.inf if found >= NEVER / 1000 else found  # interpolated towards a never


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


FIGURES = ("busy", "ratio", "arrivals", "scale")


@dataclass
class Results:
    pairs: list[tuple[float, float]] | None = None
    arrivals: list[tuple[list[float], list[float], list[float] | None]] | None = None
    """per round: (plain client, operator, baseline operator) latencies"""
    request_times: RequestTimes | None = None
    """the operator's API requests in the last arrivals round"""
    scale: Scale | None = None
    usage: tuple[Usage, Usage] | None = None


def report(sizes: Sizes, results: Results) -> None:
    print("control plane benchmark: local kube-apiserver + kwok, 2 shared cores")
    if results.pairs is not None:
        report_ratio(sizes, results.pairs)
    if results.arrivals is not None:
        report_arrivals(sizes, results.arrivals)
    if results.request_times:
        report_request_times(results.request_times)
    if results.scale is not None:
        report_scale(sizes, results.scale)
    if results.usage is not None:
        report_busy(sizes, *results.usage)


def report_ratio(sizes: Sizes, pairs: list[tuple[float, float]]) -> None:
    ratios = [conch / ceiling for ceiling, conch in pairs]
    ratio = statistics.median(ratios)
    print(f"  {sizes.n} ModelServices at once, ceiling and operator alternated {sizes.rounds}x:")
    for i, (ceiling, conch) in enumerate(pairs, 1):
        print(
            f"    round {i}: ceiling {ceiling:6.1f} s, operator {conch:6.1f} s, "
            f"ratio {conch / ceiling:5.2f}x"
        )
    print(
        f"  operator / ceiling: median {ratio:.2f}x, spread {min(ratios):.2f}-{max(ratios):.2f}x"
        f" (goal <= 1.3x: {verdict(ratio <= 1.3)})"
    )


def report_arrivals(
    sizes: Sizes, rounds: list[tuple[list[float], list[float], list[float] | None]]
) -> None:
    print(
        f"  {sizes.arrivals} services arriving {sizes.rate:g}/s, create -> Deployment, "
        f"alternated {len(rounds)}x (plain client = the ceiling; baseline = --baseline):"
    )

    def line(name: str, latencies: list[float]) -> str:
        missing = sum(1 for t in latencies if math.isinf(t))
        return (
            f"{name} p50 {percentile(latencies, 50):.2f} s p99 {percentile(latencies, 99):.2f} s"
            + (f" ({missing} never)" if missing else "")
        )

    for i, (ceiling, conch, before) in enumerate(rounds, 1):
        parts = [line("ceiling", ceiling)] + ([line("baseline", before)] if before else [])
        print(f"    round {i}: " + "; ".join([*parts, line("operator", conch)]))
    ceiling99 = statistics.median(percentile(c, 99) for c, _, _ in rounds)
    conch99 = statistics.median(percentile(o, 99) for _, o, _ in rounds)
    summary = f"  p99 median: ceiling {ceiling99:.2f} s, operator {conch99:.2f} s"
    befores = [b for _, _, b in rounds if b is not None]
    if befores:
        before99 = statistics.median(percentile(b, 99) for b in befores)
        ratios = [percentile(o, 99) / percentile(b, 99) for _, o, b in rounds if b is not None]
        summary += (
            f", baseline {before99:.2f} s (operator / baseline p99: median "
            f"{statistics.median(ratios):.2f}x, spread {min(ratios):.2f}-{max(ratios):.2f}x)"
        )
    print(summary + f" (goal operator p99 <= 1 s: {verdict(conch99 <= 1)})")


def report_request_times(times: RequestTimes, top: int = 16) -> None:
    """Where the operator's time waiting on the API went: what to make cheaper next."""
    print("  operator API requests in the last arrivals round (by time spent):")
    for key, (count, total) in sorted(times.items(), key=lambda kv: -kv[1][1])[:top]:
        mean_ms = 1000 * total / count if count else 0.0
        print(f"    {key:<40} {count:6.0f} requests, mean {mean_ms:7.1f} ms, {total:7.1f} s")


def report_scale(sizes: Sizes, scale: Scale) -> None:
    print(
        f"  {sizes.scale} services: operator RSS fresh {scale.fresh_mib:.0f} MiB "
        f"({scale.fresh_seconds:.0f} s to all Ready), after a restart {scale.restart_mib:.0f} MiB "
        f"({scale.restart_seconds:.0f} s to go through them) "
        f"(goal <= 150 MiB: {verdict(max(scale.fresh_mib, scale.restart_mib) <= 150)})"
    )
    reads, writes = scale.reads, scale.writes
    print(
        f"  API requests per reconcile, nothing changed ({reads.count:.0f} reconciles after the "
        f"restart): reads mean {reads.mean:.2f} ({reads.share_at_most(1):.0%} <= 1), "
        f"writes mean {writes.mean:.2f} ({writes.share_at_most(0):.0%} = 0) "
        f"(goal 0 writes, <= 1 read: {verdict(writes.total == 0 and reads.mean <= 1)})"
    )
    reads, writes = scale.version_reads, scale.version_writes
    print(
        f"  API requests per ModelVersion reconcile (its usedBy and catalog entry, "
        f"{reads.count:.0f} after the restart): reads mean {reads.mean:.2f}, "
        f"writes mean {writes.mean:.2f}"
    )


def report_busy(sizes: Sizes, idle: Usage, busy: Usage) -> None:
    cpu_ratio = busy.cpu_seconds / idle.cpu_seconds if idle.cpu_seconds else float("inf")
    rss_ratio = busy.rss_mib / idle.rss_mib
    print(
        f"  {sizes.churn} unrelated Deployments changing vs idle, {sizes.window:g} s each: "
        f"operator CPU {busy.cpu_seconds:.2f} s vs {idle.cpu_seconds:.2f} s "
        f"({busy.cpu_seconds - idle.cpu_seconds:+.2f} s), "
        f"RSS {busy.rss_mib:.0f} vs {idle.rss_mib:.0f} MiB ({rss_ratio:.2f}x)"
        f" (goal within 10%: CPU {cpu_ratio:.2f}x {verdict(cpu_ratio <= 1.1)}, "
        f"RSS {verdict(rss_ratio <= 1.1)})"
    )


def measure(bench: Bench, sizes: Sizes, figures: set[str], baseline: Path | None = None) -> Results:
    results = Results()
    if "busy" in figures:
        results.usage = busy_run(bench, sizes.churn, sizes.window, services=20)
    if "ratio" in figures:
        results.pairs = [
            (
                bench.ceiling(f"bench-ceiling-{r}", sizes.n),
                bench.conch(f"bench-conch-{r}", sizes.n),
            )
            for r in range(sizes.rounds)
        ]
    if "arrivals" in figures:
        results.arrivals = []
        for r in range(sizes.rounds):
            ceiling = bench.ceiling_arrivals(f"bench-arrivals-c-{r}", sizes.arrivals, sizes.rate)
            before = None
            if baseline is not None:
                before, _ = bench.arrivals(
                    f"bench-arrivals-b-{r}", sizes.arrivals, sizes.rate, baseline
                )
            conch, results.request_times = bench.arrivals(
                f"bench-arrivals-{r}", sizes.arrivals, sizes.rate
            )
            results.arrivals.append((ceiling, conch, before))
    if "scale" in figures:
        results.scale = scale_run(bench, "bench-scale", sizes.scale)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes: a few minutes")
    parser.add_argument("--n", type=int, help="ModelServices per ceiling/operator run")
    parser.add_argument("--rounds", type=int, help="ceiling/operator pairs (at least 3)")
    parser.add_argument("--rate", type=float, help="arrivals per second")
    parser.add_argument("--arrivals", type=int, help="services arriving at --rate")
    parser.add_argument("--scale", type=int, help="services for the RSS/restart figure")
    parser.add_argument("--churn", type=int, help="unrelated Deployments in the busy cluster")
    parser.add_argument("--window", type=float, help="seconds of each idle/busy window")
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="CHECKOUT",
        help="also run the arrivals with the operator of another checkout (e.g. a git "
        "worktree of the previous commit), alternated with this one",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=FIGURES,
        help="measure only this figure (repeatable; default: all)",
    )
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    given = {
        k: v
        for k, v in vars(args).items()
        if k not in ("quick", "only", "baseline") and v is not None
    }
    sizes = replace(sizes, **given)
    figures = set(args.only or FIGURES)
    # a stopped benchmark still stops its control plane and operators (the `finally`s run)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    toolchain = ensure_toolchain()
    with tempfile.TemporaryDirectory(prefix="conch-bench-") as tmp:
        cluster = Cluster(Path(tmp) / "cluster")
        # room for every run's pods, kept to the end (CPU-only services land on the two
        # untainted nodes; each pod requests 100m CPU and 128Mi for its pull step)
        room = (sizes.n + 3 * sizes.arrivals) * sizes.rounds + sizes.scale + 100
        roomy = {"pods": room, "cpu": str(max(32, room // 5)), "memory": f"{room}Gi"}
        cluster.start(toolchain, tuple(replace(n, **roomy) for n in DEFAULT_NODES))
        try:
            cluster.install_crds(toolchain, ROOT / "crds")
            results = measure(Bench(cluster, Path(tmp)), sizes, figures, args.baseline)
        finally:
            cluster.stop()
    report(sizes, results)


if __name__ == "__main__":
    main()
