"""Leader election benchmark: how long a standby operator replica waits before it leads.

One run, real parts: a local control plane and `conch.leader.LeaderElector`s with the
operator's defaults (lease 10 s, renew deadline 7 s, retry 2 s). Two cases, each a few
times: the leader crashes (stops renewing and releases nothing, as after SIGKILL or a lost
node) and the leader shuts down cleanly (releases the Lease, as on SIGTERM). Printed: time
from the leader's end to the standby holding the Lease. Goal: <= 15 s to the new leader's
first reconcile, which follows the takeover at once.

    python benchmarks/leader_failover.py [--trials 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from kubernetes import client, config

from conch.dev.cluster import Cluster
from conch.dev.toolchain import ensure_toolchain
from conch.leader import LeaderElector
from conch.rest import Rest


def takeover(api: Rest, namespace: str, clean: bool, trial: int) -> float:
    name = f"failover-{'clean' if clean else 'crash'}-{trial}"
    leader = LeaderElector(api, namespace, name, "leader")
    standby = LeaderElector(api, namespace, name, "standby")
    assert leader.acquire()
    leader.keep(on_lost=lambda: None)
    led = threading.Event()
    waiting = threading.Thread(target=lambda: standby.acquire() and led.set(), daemon=True)
    waiting.start()  # the standby polls every retry, as a second replica does
    time.sleep(leader.retry * 2.3)  # a few renewals, at a random phase of the poll
    ended = time.monotonic()
    leader.stop(release=clean)
    assert led.wait(60)
    took = time.monotonic() - ended
    waiting.join()
    standby.stop(release=True)
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(Path(tmp) / "control-plane")
        cluster.start(ensure_toolchain())
        try:
            api = config.new_client_from_config(str(cluster.kubeconfig))
            core = client.CoreV1Api(api)
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="bench")))
            for clean in (False, True):
                times = [takeover(cluster.rest(), "bench", clean, i) for i in range(args.trials)]
                label = "clean shutdown (Lease released)" if clean else "crash (Lease expires)"
                print(
                    f"{label:34} takeover median {statistics.median(times):5.2f} s, "
                    f"max {max(times):5.2f} s over {len(times)} trials"
                )
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
