"""Rollout benchmark: how fast a bad canary is rolled back, and how many requests fail.

One run, real parts: a local control plane, the operator, a real Prometheus scraping real
Triton processes behind the stable and canary pods, and a bounded load loop on loopback
that follows the weights the ModelService reports. The canary fails a share of requests;
the analysis interval is 5 s.

Printed: time from the first failed canary request to traffic back on the stable version,
and failed requests served, for Conch; next to them the same figures for an
interval x threshold rule (Flagger's: roll back after `threshold` failed checks, one per
interval) replayed on the same request log. Target: rollback within 2 analysis intervals.

    python benchmarks/rollout.py [--failure-rate 0.3] [--flagger-threshold 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config

from conch.dev.cluster import Cluster
from conch.dev.operator import OperatorProcess
from conch.dev.prometheus import PrometheusProcess
from conch.dev.toolchain import ensure_toolchain
from conch.dev.traffic import Backends, Split, Traffic

ROOT = Path(__file__).resolve().parent.parent
GROUP, VERSION = "serving.conch.dev", "v1alpha1"
NS, NAME = "bench-rollout", "digits"
INTERVAL = 5.0


def version(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelVersion",
        "metadata": {"name": name},
        "spec": {
            "model": "digits",
            "version": name,
            "format": "python",
            "source": {"uri": f"https://models.example.com/{name}.tar", "sha256": "0" * 64},
            "signature": {
                "maxBatchSize": 8,
                "inputs": [{"name": "x", "dataType": "TYPE_FP32", "dims": [4]}],
                "outputs": [{"name": "y", "dataType": "TYPE_FP32", "dims": [1]}],
            },
        },
    }


def service() -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelService",
        "metadata": {"name": NAME},
        "spec": {
            "modelVersion": "v1",
            "replicas": 4,
            "resources": {"gpus": 1},
            "rollout": {
                "steps": [{"weight": 25}, {"weight": 50}],
                "analysis": {
                    "interval": f"{INTERVAL:.0f}s",
                    "maxErrorRate": 0.05,
                    "minRequests": 5,
                    "failureLimit": 1,
                },
            },
        },
    }


def flagger_rollback(
    log: list[tuple[float, str, bool]], start: float, threshold: int, max_error_rate: float
) -> float | None:
    """When an interval x threshold rule rolls back, replayed on the request log: a check
    every INTERVAL from `start` over the last INTERVAL of canary requests; `threshold`
    failed checks in a row roll back. After Conch's rollback the log has no canary requests:
    those checks see the error rate the canary had while it served (it would have kept
    failing). Returns that time, or None if the rule never rolls back."""
    canary = [ok for _, v, ok in log if v == "v2"]
    observed = canary.count(False) / len(canary) if canary else 0.0
    last = max((t for t, v, _ in log if v == "v2"), default=start)
    failures, tick = 0, start + INTERVAL
    for _ in range(threshold * 10):
        window = [ok for t, v, ok in log if v == "v2" and tick - INTERVAL <= t < tick]
        rate = window.count(False) / len(window) if window else observed if tick > last else 0.0
        failures = failures + 1 if rate > max_error_rate else 0
        if failures >= threshold:
            return tick
        tick += INTERVAL
    return None


def status(objects: client.CustomObjectsApi) -> dict[str, Any]:
    body = objects.get_namespaced_custom_object(GROUP, VERSION, NS, "modelservices", NAME)
    return dict(body.get("status", {}))


def split(objects: client.CustomObjectsApi) -> Split:
    """(stable, canary, canary weight) as the ModelService's status tells them."""
    s = status(objects)
    canary = s.get("canary") or {}
    return (
        (s.get("stable") or {}).get("version"),
        canary.get("version"),
        int(canary.get("weight", 0)),
    )


def roll_out(
    objects: client.CustomObjectsApi, backends: Backends
) -> tuple[list[tuple[float, str, bool]], float | None, dict[str, Any]]:
    """Under traffic, move spec.modelVersion to the failing v2 and wait (150 s at most) for
    every request to be back on stable: the request log, when that was, the final status."""
    with Traffic(backends, lambda: split(objects), max_seconds=180) as load:
        time.sleep(3)  # stable traffic first, so the canary is judged against a live series
        started = time.monotonic()
        objects.patch_namespaced_custom_object(
            GROUP, VERSION, NS, "modelservices", NAME, {"spec": {"modelVersion": "v2"}}
        )
        back = None
        while time.monotonic() - started < 150:
            if (
                split(objects)[2] == 0
                and load.count("v2", ok=False)
                and status(objects).get("phase") in ("RollingBack", "RolledBack")
            ):
                back = time.monotonic()
                break
            time.sleep(0.1)
        time.sleep(1)
    return list(load.log), back, status(objects)


def report(
    args: argparse.Namespace,
    log: list[tuple[float, str, bool]],
    back: float | None,
    final: dict[str, Any],
) -> None:
    """Conch's rollback against an interval x threshold rule, from the same request log."""
    bad = [t for t, v, ok in log if v == "v2" and not ok]
    if back is None or not bad:
        raise SystemExit(
            f"no rollback observed: phase {final.get('phase')}, {len(bad)} failed requests"
        )
    first_bad = bad[0]
    conch_seconds = back - first_bad
    conch_failed = sum(1 for t in bad if t <= back)
    canary_start = min(t for t, v, _ in log if v == "v2")
    flagger_at = flagger_rollback(log, canary_start, args.flagger_threshold, 0.05)
    exposure = max(back - canary_start, 1e-9)
    failed_per_second = conch_failed / exposure
    print(
        f"rollout benchmark: canary failing {args.failure_rate:.0%} of requests, analysis interval {INTERVAL:.0f} s"
    )
    print(
        f"  conch:   first failed request -> traffic back on stable: {conch_seconds:6.1f} s "
        f"({conch_seconds / INTERVAL:.1f} intervals), failed requests served: {conch_failed}"
    )
    if flagger_at is None:
        print("  interval x threshold rule: would not have rolled back within the run")
        return
    # The rule's checks see the same request log; past the end of our run the canary would
    # have kept failing at the rate it did while it served.
    flagger_seconds = flagger_at - first_bad
    flagger_failed = round(failed_per_second * (flagger_at - canary_start))
    print(
        f"  interval x threshold (threshold {args.flagger_threshold}): {flagger_seconds:6.1f} s "
        f"({flagger_seconds / INTERVAL:.1f} intervals), failed requests served: ~{flagger_failed}"
    )
    print(
        f"  ratio conch / rule: time {conch_seconds / flagger_seconds:.2f}x, "
        f"failed requests {conch_failed / max(flagger_failed, 1):.2f}x"
    )
    print(
        f"  target (rollback within 2 intervals): {'met' if conch_seconds <= 2 * INTERVAL else 'missed'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--failure-rate", type=float, default=0.3)
    parser.add_argument(
        "--flagger-threshold",
        type=int,
        default=5,
        help="failed checks before Flagger rolls back (its docs' usual 5)",
    )
    args = parser.parse_args()
    toolchain = ensure_toolchain()
    with tempfile.TemporaryDirectory(prefix="conch-bench-") as tmp:
        cluster = Cluster(Path(tmp) / "cluster")
        cluster.start(toolchain)
        prometheus = PrometheusProcess(Path(tmp) / "prometheus").start()
        operator = None
        backends = None
        try:
            cluster.install_crds(toolchain, ROOT / "crds")
            api = config.new_client_from_config(str(cluster.kubeconfig))
            core, objects = client.CoreV1Api(api), client.CustomObjectsApi(api)
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
            while not core.list_namespaced_service_account(NS).items:
                time.sleep(0.2)
            operator = OperatorProcess(
                cluster.kubeconfig,
                Path(tmp) / "operator.log",
                "-n",
                NS,
                f"--prometheus-url={prometheus.url}",
            ).start()
            for name in ("v1", "v2"):
                objects.create_namespaced_custom_object(
                    GROUP, VERSION, NS, "modelversions", version(name)
                )
            objects.create_namespaced_custom_object(GROUP, VERSION, NS, "modelservices", service())

            while status(objects).get("phase") != "Stable":
                time.sleep(0.2)
            backends = Backends(prometheus, NS, NAME)
            backends.start("v1")
            backends.start("v2", failure_rate=args.failure_rate)
            log, back, final = roll_out(objects, backends)
        finally:
            if backends:
                backends.stop()
            if operator:
                operator.stop()
            prometheus.stop()
            cluster.stop()

    report(args, log, back, final)


if __name__ == "__main__":
    main()
