"""Failover during a rollout, end to end: two real operator processes, one killed mid-canary.

One run, real parts: a local control plane (kwok nodes) and two `conch operator run
--leader-elect` processes (the chart's default: lease 10 s, renew deadline 7 s, retry 2 s).
Each trial, in a namespace of its own:

1. operator `a` leads, operator `b` stands by (both watch; only `a` reconciles);
2. a ModelService with 2 replicas rolls out digits-v1 -> digits-v2 through timed steps
   (25%, 50%, 75%; analysis off, so no metrics source is needed);
3. once the rollout has recorded step 1 (50%, its canary ready), `a` gets SIGKILL: it
   renews nothing and releases nothing, as after a lost node;
4. measured: from the kill to `b`'s first reconcile (its `conch_reconcile_total` leaves 0;
   a standby reconciles nothing, so the first increment is its first reconcile) and to `b`
   holding the Lease;
5. checked: the rollout continues from its recorded step, never from the start: every
   status seen after the kill has the same `rolloutStartedAt`, a step no lower than the
   recorded one, the recorded step's `stepStartedAt` while it is still at that step (its
   pause is not restarted), and the rollout ends Promoted.

Goal (issue 13): <= 15 s to the first reconcile by the new leader; printed as a ratio.

    python benchmarks/rollout_failover.py [--trials 3]
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config

from conch.api import GROUP, VERSION
from conch.dev.cluster import Cluster
from conch.dev.operator import OperatorProcess
from conch.dev.toolchain import ensure_toolchain

ROOT = Path(__file__).resolve().parents[1]
GOAL = 15.0
LEASE = "conch-operator"
STEPS = [{"weight": 25, "pause": "15s"}, {"weight": 50, "pause": "15s"}, {"weight": 75}]
KILL_AT_STEP = 1


def wait(check: Any, timeout: float, what: str, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(every)
    raise TimeoutError(what)


def version_body(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelVersion",
        "metadata": {"name": name},
        "spec": {
            "model": "digits",
            "version": name.rsplit("-", 1)[-1],
            "format": "python",
            "source": {"uri": f"https://models.example.com/{name}.tar", "sha256": "0" * 64},
            "signature": {
                "maxBatchSize": 8,
                "inputs": [{"name": "x", "dataType": "TYPE_FP32", "dims": [4]}],
                "outputs": [{"name": "y", "dataType": "TYPE_FP32", "dims": [1]}],
            },
        },
    }


def service_body() -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelService",
        "metadata": {"name": "digits"},
        "spec": {
            "modelVersion": "digits-v1",
            "replicas": 2,
            "resources": {"gpus": 0},
            "rollout": {"steps": STEPS, "analysis": {"enabled": False}},
        },
    }


@dataclass
class Watcher:
    """Polls the ModelService's status in the background and keeps every distinct one."""

    objects: client.CustomObjectsApi
    namespace: str
    seen: list[dict[str, Any]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            status = self.status()
            if not self.seen or self.seen[-1] != status:
                self.seen.append(status)
            self._stop.wait(0.1)

    def status(self) -> dict[str, Any]:
        svc = self.objects.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "modelservices", "digits"
        )
        return dict(svc.get("status") or {})

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@dataclass(frozen=True)
class Trial:
    first_reconcile: float
    lease_taken: float
    continued: bool
    why: str


def reconciles(operator: OperatorProcess) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        s.value
        for family in text_string_to_metric_families(operator.metrics())
        for s in family.samples
        if s.name == "conch_reconcile_total"
    )


def holder(api: client.ApiClient, namespace: str) -> str | None:
    try:
        lease = client.CoordinationV1Api(api).read_namespaced_lease(LEASE, namespace)
    except client.ApiException:
        return None
    return str(lease.spec.holder_identity or "") or None


def continued(recorded: dict[str, Any], after: list[dict[str, Any]]) -> tuple[bool, str]:
    """Whether every status after the kill carries on the recorded rollout (pure)."""
    for status in after:
        if status.get("rolloutStartedAt") != recorded["rolloutStartedAt"]:
            return False, f"rolloutStartedAt moved: {status.get('rolloutStartedAt')}"
        if status.get("phase") == "Progressing":
            if int(status.get("step", -1)) < recorded["step"]:
                return False, f"went back to step {status.get('step')}"
            if status["step"] == recorded["step"] and status.get("stepStartedAt") != recorded.get(
                "stepStartedAt"
            ):
                return False, "the recorded step's pause was restarted"
    history = (after[-1].get("rolloutHistory") or [{}])[-1] if after else {}
    if (
        history.get("result") != "Promoted"
        or history.get("startedAt") != recorded["rolloutStartedAt"]
    ):
        return False, f"did not end Promoted: {history}"
    return True, f"steps seen after the kill: {sorted({s.get('step') for s in after} - {None})}"


def trial(api: client.ApiClient, kubeconfig: Path, logs: Path, i: int) -> Trial:
    ns = f"failover-{i}"
    core, objects = client.CoreV1Api(api), client.CustomObjectsApi(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    wait(lambda: core.list_namespaced_service_account(ns).items, 30, "default SA")
    for name in ("digits-v1", "digits-v2"):
        objects.create_namespaced_custom_object(
            GROUP, VERSION, ns, "modelversions", version_body(name)
        )

    def operator(who: str) -> OperatorProcess:
        return OperatorProcess(
            kubeconfig,
            logs / f"{ns}-{who}.log",
            f"--namespace={ns}",
            "--leader-elect",
            f"--leader-election-id={LEASE}",
            env={"POD_NAMESPACE": ns, "POD_NAME": who},
        ).start()

    a = operator("a")
    b: OperatorProcess | None = None
    try:
        wait(lambda: holder(api, ns) == "a", 30, "a leads")
        b = operator("b")
        objects.create_namespaced_custom_object(GROUP, VERSION, ns, "modelservices", service_body())
        watcher = Watcher(objects, ns)
        wait(lambda: watcher.status().get("phase") == "Stable", 90, "Stable", every=0.2)
        objects.patch_namespaced_custom_object(
            GROUP, VERSION, ns, "modelservices", "digits", {"spec": {"modelVersion": "digits-v2"}}
        )

        def at_kill_step() -> dict[str, Any] | None:
            s = watcher.status()
            ok = s.get("step") == KILL_AT_STEP and s.get("stepStartedAt")
            return s if ok and s.get("phase") == "Progressing" else None

        recorded = wait(at_kill_step, 120, f"step {KILL_AT_STEP}", every=0.1)
        assert reconciles(b) == 0, "the standby reconciled"
        time.sleep(1.3 * i % 2)  # vary the kill's phase against the 2 s renewals
        before = len(watcher.seen)
        killed = time.monotonic()
        a.stop(signal.SIGKILL)
        lease_taken = first = 0.0
        while not first:
            now = time.monotonic() - killed
            if not lease_taken and holder(api, ns) == "b":
                lease_taken = now
            if reconciles(b) > 0:
                first = now
            if now > 120:
                raise TimeoutError("the standby never reconciled")
            time.sleep(0.05)
        lease_taken = lease_taken or first

        def promoted() -> bool:
            s = watcher.status()
            return s.get("phase") == "Stable" and s.get("stable", {}).get("version") == "digits-v2"

        wait(promoted, 180, "promoted", every=0.2)
        time.sleep(0.3)
        watcher.stop()
        ok, why = continued(recorded, watcher.seen[before:])
        return Trial(first, lease_taken, ok, why)
    finally:
        a.stop(signal.SIGKILL)
        if b is not None:
            b.stop()
        core.delete_namespace(ns)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(Path(tmp) / "control-plane")
        toolchain = ensure_toolchain()
        cluster.start(toolchain)
        try:
            cluster.install_crds(toolchain, ROOT / "crds")
            api = config.new_client_from_config(str(cluster.kubeconfig))
            results = []
            for i in range(args.trials):
                result = trial(api, cluster.kubeconfig, Path(tmp), i)
                print(
                    f"trial {i}: first reconcile by the new leader {result.first_reconcile:5.2f} s "
                    f"after SIGKILL (Lease taken at {result.lease_taken:5.2f} s); rollout "
                    f"{'continued from its recorded step' if result.continued else 'BROKEN'}: "
                    f"{result.why}",
                    flush=True,
                )
                results.append(result)
        finally:
            cluster.stop()
    times = [r.first_reconcile for r in results]
    median, worst = statistics.median(times), max(times)
    print(
        f"kill -> first reconcile by the new leader: median {median:.2f} s, max {worst:.2f} s "
        f"over {len(times)} trials; goal {GOAL:.0f} s: median/goal {median / GOAL:.2f}x, "
        f"max/goal {worst / GOAL:.2f}x"
    )
    good = sum(r.continued for r in results)
    print(f"rollout continued from its recorded step and was promoted: {good}/{len(results)}")
    return 0 if good == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
