"""Built-in analysis queries over Triton's own `nv_inference_*` series, so users write no
PromQL. Series carry `namespace`, `service` (the ModelService's Service) and the pod label
`serving_conch_dev_version` (the ServiceMonitor's podTargetLabels)."""

from __future__ import annotations

from dataclasses import dataclass

VERSION_LABEL = "serving_conch_dev_version"


@dataclass(frozen=True)
class Target:
    namespace: str
    service: str
    version: str
    interval: str
    """A PromQL range such as 30s."""

    @property
    def selector(self) -> str:
        return (
            f'namespace="{self.namespace}",service="{self.service}",'
            f'{VERSION_LABEL}="{self.version}"'
        )

    def increase(self, series: str, extra: str = "") -> str:
        labels = self.selector + (f",{extra}" if extra else "")
        return f"sum(increase({series}{{{labels}}}[{self.interval}]))"


def requests(t: Target) -> str:
    return (
        f"{t.increase('nv_inference_request_success')} + "
        f"{t.increase('nv_inference_request_failure')}"
    )


def error_rate(t: Target) -> str:
    return f"{t.increase('nv_inference_request_failure')} / clamp_min({requests(t)}, 1)"


def p99_latency_ms(t: Target) -> str:
    """Triton's own request-latency summary (started with --metrics-config summary_latencies)."""
    return f'max(nv_inference_request_summary_us{{{t.selector},quantile="0.99"}}) / 1000'


def queue_time_ms(t: Target) -> str:
    return (
        f"{t.increase('nv_inference_queue_duration_us')} / "
        f"clamp_min({t.increase('nv_inference_request_success')}, 1) / 1000"
    )


def custom(template: str, t: Target) -> str:
    """A user query with {{namespace}}, {{service}}, {{version}} and {{interval}} filled in."""
    return (
        template.replace("{{namespace}}", t.namespace)
        .replace("{{service}}", t.service)
        .replace("{{version}}", t.version)
        .replace("{{interval}}", t.interval)
    )
