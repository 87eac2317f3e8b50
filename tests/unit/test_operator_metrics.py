"""Every API request is timed by verb and resource; only failures count as errors."""

from __future__ import annotations

from conch.metrics import OperatorMetrics


def value(metrics: OperatorMetrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def test_requests_are_timed_and_only_failures_are_errors() -> None:
    metrics = OperatorMetrics()
    metrics.api_request("apply", "deployments", "200", 0.02)
    metrics.api_request("apply", "deployments", "201", 0.3)
    metrics.api_request("apply", "deployments", "409", 0.01)
    metrics.api_request("get", "modelservices", "connection", 10.0)
    seconds = "conch_kubernetes_api_request_duration_seconds"
    apply = {"verb": "apply", "resource": "deployments"}
    assert value(metrics, f"{seconds}_count", **apply) == 3
    assert abs(value(metrics, f"{seconds}_sum", **apply) - 0.33) < 1e-9
    assert value(metrics, f"{seconds}_bucket", **apply, le="0.025") == 2
    assert value(metrics, f"{seconds}_count", verb="get", resource="modelservices") == 1
    errors = "conch_kubernetes_api_errors_total"
    assert value(metrics, errors, verb="apply", code="409") == 1
    assert value(metrics, errors, verb="apply", code="200") == 0
    assert value(metrics, errors, verb="apply", code="201") == 0
    assert value(metrics, errors, verb="get", code="connection") == 1
