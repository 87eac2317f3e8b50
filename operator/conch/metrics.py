"""The operator's own Prometheus metrics (prometheus-client), on a registry of their own."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class _ConditionCollector(Collector):
    """conch_modelservices{condition,status}: counted at scrape time from the controller's view."""

    def __init__(self, snapshot: Callable[[], dict[tuple[str, str], str]]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "conch_modelservices",
            "Managed ModelServices by Ready condition status.",
            labels=["condition", "status"],
        )
        counts: dict[str, int] = {"True": 0, "False": 0, "Unknown": 0}
        for status in self._snapshot().values():
            counts[status] = counts.get(status, 0) + 1
        for status, count in counts.items():
            family.add_metric(["Ready", status], count)
        yield family


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
        self.api_errors = Counter(
            "conch_kubernetes_api_errors",
            "Failed Kubernetes API calls by verb and HTTP status (or 'connection').",
            ["verb", "code"],
            registry=self.registry,
        )

    def watch_conditions(self, snapshot: Callable[[], dict[tuple[str, str], str]]) -> None:
        self.registry.register(_ConditionCollector(snapshot))

    def api_error(self, verb: str, code: str) -> None:
        self.api_errors.labels(verb=verb, code=code).inc()

    def serve(self, host: str, port: int) -> None:
        start_http_server(port, addr=host, registry=self.registry)
