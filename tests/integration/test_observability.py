"""What the people watching models get, checked for real: the chart's alert rules pass
`promtool check rules` and `promtool test rules`, every dashboard and alert query
evaluates on a real Prometheus scraping real Tritons (a healthy stable version and a
canary failing half its requests), and the Argo CD health check runs in a real Lua."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conch.dev.prometheus import PrometheusProcess
from conch.dev.toolchain import Toolchain
from conch.dev.traffic import Backends, Traffic
from conch.providers.queries import VERSION_LABEL
from tests.integration.test_chart import CHART, Helm
from tests.support import eventually

pytestmark = pytest.mark.integration

HERE = Path(__file__).parent
RULE_API = "monitoring.coreos.com/v1/PrometheusRule"


@pytest.fixture(scope="module")
def helm(toolchain: Toolchain, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(toolchain.binary("helm"), tmp_path_factory.mktemp("helm"))


def rendered_rules(helm: Helm) -> dict[str, Any]:
    """The PrometheusRule's spec as the chart renders it for release "conch"."""
    objects = helm.render(
        "--set=prometheusRule.enabled=true",
        "--set=prometheusRule.labels.release=prom",
        f"--api-versions={RULE_API}",
        namespace="conch-system",
    )
    (rule,) = [o for o in objects if o["kind"] == "PrometheusRule"]
    assert rule["metadata"]["labels"]["release"] == "prom"
    return dict(rule["spec"])


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is not installed (make system-deps)"
    return subprocess.run(
        [binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_rules_pass_promtool_check_and_unit_tests(helm: Helm, tmp_path: Path) -> None:
    spec = rendered_rules(helm)
    alerts = [r["alert"] for g in spec["groups"] for r in g["rules"]]
    assert set(alerts) == {
        "ConchOperatorDown",
        "ConchReconcileErrors",
        "ConchKubernetesAPIErrors",
        "ConchModelServiceNotReady",
        "ConchRolledBack",
        "ConchAnalysesFailing",
        "ConchAnalysesInconclusive",
        "ConchRolloutStalled",
        "ConchTritonErrors",
    }
    (tmp_path / "conch-alerts.rendered.yaml").write_text(yaml.safe_dump(spec))
    checked = promtool("check", "rules", "conch-alerts.rendered.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alerts)} rules found" in checked.stdout
    shutil.copy(HERE / "promtool" / "conch-alerts.test.yaml", tmp_path)
    tested = promtool("test", "rules", "conch-alerts.test.yaml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_prometheus_rule_needs_the_api_and_dashboards_carry_the_sidecar_label(
    helm: Helm,
) -> None:
    kinds = [o["kind"] for o in helm.render("--set=prometheusRule.enabled=true")]
    assert "PrometheusRule" not in kinds  # the cluster does not serve the API
    objects = helm.render(
        "--set=dashboards.label=dashboards",
        "--set=dashboards.labelValue=conch",
        "--set=dashboards.namespace=monitoring",
        "--set=dashboards.annotations.grafana_folder=Conch",
    )
    (board,) = [o for o in objects if o["kind"] == "ConfigMap"]
    assert board["metadata"]["labels"]["dashboards"] == "conch"
    assert board["metadata"]["namespace"] == "monitoring"
    assert board["metadata"]["annotations"] == {"grafana_folder": "Conch"}
    (name,) = board["data"]
    shipped = (CHART / "dashboards" / name).read_text()
    assert json.loads(board["data"][name]) == json.loads(shipped)
    off = helm.render("--set=dashboards.enabled=false")
    assert "ConfigMap" not in [o["kind"] for o in off]


# -- every query on a real Prometheus scraping real Tritons ----------------------------


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every panel target and template variable."""
    board = json.loads((CHART / "dashboards" / "modelservices.json").read_text())
    found = [(p["title"], t["expr"]) for p in board["panels"] for t in p.get("targets", [])]
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            inner = re.fullmatch(r"label_values\((.*), (\w+)\)", var["query"]["query"])
            assert inner, var
            found.append((f"${var['name']}", f"count by ({inner[2]}) ({inner[1]})"))
    return found


def grafana(expr: str, namespace: str, service: str) -> str:
    """The query as Grafana sends it with these variables chosen."""
    return (
        expr.replace("$__rate_interval", "15s")
        .replace("$namespace", namespace)
        .replace("$service", service)
    )


def instant(prometheus: PrometheusProcess, expr: str) -> list[dict[str, Any]]:
    url = f"{prometheus.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.load(response)
    assert body["status"] == "success", (expr, body)
    return list(body["data"]["result"])


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusProcess]:
    """A real Prometheus scraping two real Tritons of service ml/digits: v1 healthy, v2
    failing half its requests, after a few seconds of traffic split 50/50.

    Triton creates a failure series at its first failure, so rate() never sees the
    failures counted before its first scrape; the traffic goes on for 100 more v2
    failures after both series are in Prometheus, or that first sample would weigh on
    the error rate (the CI once read 0.18 for a true 0.5)."""
    prometheus = PrometheusProcess(tmp_path_factory.mktemp("prometheus")).start()
    backends = Backends(prometheus, "ml", "digits")
    try:
        backends.start("v1")
        backends.start("v2", failure_rate=0.5)
        with Traffic(backends, lambda: ("v1", "v2", 50), senders=2, max_requests=2000) as load:
            eventually(
                lambda: load.count("v2", ok=False) >= 20 and load.count("v1", ok=True) >= 20,
                timeout=60,
                what="traffic to both versions",
            )
            both = (  # failures carry a `reason` label that successes do not
                f"sum by ({VERSION_LABEL}) (rate(nv_inference_request_failure[15s]))"
                f" + sum by ({VERSION_LABEL}) (rate(nv_inference_request_success[15s]))"
            )
            eventually(
                lambda: len(instant(prometheus, both)) == 2,
                timeout=60,
                what="both versions' rates in Prometheus",
            )
            seen = load.count("v2", ok=False)
            eventually(
                lambda: load.count("v2", ok=False) >= seen + 100,
                timeout=60,
                what="100 more v2 failures",
            )
        yield prometheus
    finally:
        backends.stop()
        prometheus.stop()


@pytest.mark.parametrize(("title", "expr"), dashboard_queries())
def test_dashboard_query_evaluates(scraped: PrometheusProcess, title: str, expr: str) -> None:
    result = instant(scraped, grafana(expr, "ml", "digits"))
    triton = "nv_inference" in expr and "DCGM" not in expr
    if triton:  # the Triton panels show both versions (operator panels need the operator)
        assert result, f"{title}: no data"
        if VERSION_LABEL in expr:
            assert {r["metric"][VERSION_LABEL] for r in result} == {"v1", "v2"}, title


def test_dashboard_error_rate_tells_the_canary_from_stable(scraped: PrometheusProcess) -> None:
    (expr,) = [e for t, e in dashboard_queries() if t == "Error rate"]
    rates = {
        r["metric"][VERSION_LABEL]: float(r["value"][1])
        for r in instant(scraped, grafana(expr, "ml", "digits").replace("15s", "1m"))
    }
    assert rates["v1"] == 0.0
    assert 0.2 < rates["v2"] < 0.8


def test_every_alert_query_evaluates_and_triton_errors_fire(
    helm: Helm, scraped: PrometheusProcess
) -> None:
    for group in rendered_rules(helm)["groups"]:
        for rule in group["rules"]:
            result = instant(scraped, rule["expr"])
            if rule["alert"] == "ConchTritonErrors":
                assert [(r["metric"]["namespace"], r["metric"]["service"]) for r in result] == [
                    ("ml", "digits")
                ]


def adapter_rules(helm: Helm) -> list[dict[str, Any]]:
    """The prometheus-adapter configuration the chart ships, as the adapter reads it."""
    objects = helm.render(
        "--set=prometheusAdapter.enabled=true",
        "--set=prometheusAdapter.namespace=monitoring",
        namespace="conch-system",
    )
    (config,) = [o for o in objects if o["metadata"]["name"] == "conch-prometheus-adapter"]
    assert config["kind"] == "ConfigMap" and config["metadata"]["namespace"] == "monitoring"
    (key,) = config["data"]
    assert key == "config.yaml"  # the key prometheus-adapter's chart mounts (rules.existing)
    shipped = yaml.safe_load((CHART / "adapter" / "rules.yaml").read_text())
    rules = list(yaml.safe_load(config["data"][key])["rules"])
    assert rules == shipped
    return rules


def test_prometheus_adapter_rules_are_optional(helm: Helm) -> None:
    names = [o["metadata"]["name"] for o in helm.render()]
    assert "conch-prometheus-adapter" not in names


def test_prometheus_adapter_rules_give_each_pod_a_value(
    helm: Helm, scraped: PrometheusProcess
) -> None:
    """Each rule as the adapter runs it for one namespace's pods: one value per pod."""
    rules = adapter_rules(helm)
    assert {r["name"]["as"] for r in rules} == {
        "conch_triton_queue_time_per_request_us",
        "conch_triton_inferences_per_second",
    }
    for rule in rules:
        series = rule["seriesQuery"].strip("'")
        assert instant(scraped, series), f"{series}: no series to discover"
        query = (
            rule["metricsQuery"]
            .replace("<<.LabelMatchers>>", 'namespace="ml",pod=~"digits-v1-0|digits-v2-0"')
            .replace("<<.GroupBy>>", "pod")
        )
        values = {r["metric"]["pod"]: float(r["value"][1]) for r in instant(scraped, query)}
        assert sorted(values) == ["digits-v1-0", "digits-v2-0"], rule["name"]
        assert all(v >= 0 for v in values.values())
    rate = next(r for r in rules if r["name"]["as"] == "conch_triton_inferences_per_second")
    query = rate["metricsQuery"].replace("<<.LabelMatchers>>", 'namespace="ml"')
    assert float(instant(scraped, query.replace("<<.GroupBy>>", "namespace"))[0]["value"][1]) > 0
