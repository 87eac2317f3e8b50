"""The operator's own Prometheus metrics (prometheus-client), on a registry of their own."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

PHASES = ("Pending", "Stable", "Progressing", "Paused", "Promoting", "RollingBack", "RolledBack")


class _ServiceCollector(Collector):
    """Counted at scrape time from the controller's view of each ModelService:
    conch_modelservices{condition,status} and conch_rollout_phase{phase}."""

    def __init__(self, snapshot: Callable[[], dict[tuple[str, str], tuple[str, str]]]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        services = self._snapshot().values()
        ready = GaugeMetricFamily(
            "conch_modelservices",
            "Managed ModelServices by Ready condition status.",
            labels=["condition", "status"],
        )
        for status in ("True", "False", "Unknown"):
            ready.add_metric(["Ready", status], sum(1 for r, _ in services if r == status))
        yield ready
        phase = GaugeMetricFamily(
            "conch_rollout_phase", "Managed ModelServices by rollout phase.", labels=["phase"]
        )
        for name in PHASES:
            phase.add_metric([name], sum(1 for _, p in services if p == name))
        yield phase


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.reconciles = Counter(
            "conch_reconcile",
            "ModelService reconciles by result (success, error, requeue).",
            ["result"],
            registry=self.registry,
        )
        self.reconcile_seconds = Histogram(
            "conch_reconcile_duration_seconds",
            "Time to reconcile one ModelService.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.analyses = Counter(
            "conch_rollout_analyses",
            "Canary analyses by verdict (Passed, Failed, Inconclusive).",
            ["verdict"],
            registry=self.registry,
        )
        self.api_requests = Histogram(
            "conch_reconcile_api_requests",
            "Kubernetes API requests made by one ModelService reconcile, reads and writes.",
            ["kind"],
            buckets=(0, 1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )
        self.version_api_requests = Histogram(
            "conch_version_reconcile_api_requests",
            "Kubernetes API requests made by one ModelVersion reconcile (its status.usedBy and "
            "its catalog entry), reads and writes.",
            ["kind"],
            buckets=(0, 1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )
        self.events_dropped = Counter(
            "conch_events_dropped",
            "Events not posted because too many were waiting (Events are best effort).",
            registry=self.registry,
        )
        self.api_errors = Counter(
            "conch_kubernetes_api_errors",
            "Failed Kubernetes API calls by verb and HTTP status (or 'connection').",
            ["verb", "code"],
            registry=self.registry,
        )

        self.api_seconds = Histogram(
            "conch_kubernetes_api_request_duration_seconds",
            "Kubernetes API request time by verb and resource (watches not included).",
            ["verb", "resource"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )

    def watch_services(
        self, snapshot: Callable[[], dict[tuple[str, str], tuple[str, str]]]
    ) -> None:
        """`snapshot()`: (namespace, name) -> (Ready status, phase), read at scrape time."""
        self.registry.register(_ServiceCollector(snapshot))

    def api_request(self, verb: str, resource: str, code: str, seconds: float) -> None:
        """`conch.kube.Observer`: every request's duration, and the failures by status."""
        self.api_seconds.labels(verb=verb, resource=resource).observe(seconds)
        if not code.startswith("2"):
            self.api_errors.labels(verb=verb, code=code).inc()

    def serve(self, host: str, port: int) -> None:
        start_http_server(port, addr=host, registry=self.registry)
