"""Leader election on a real API server's Lease: one leader at a time, a clean handover
within one retry, a takeover after a crashed leader's lease expires (also between two real
operator replicas), and exactly one winner when two candidates race for a free Lease."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest
from kubernetes import client

from conch.dev.cluster import Cluster
from conch.dev.operator import OperatorProcess
from conch.leader import LeaderElector
from conch.rest import Rest
from tests.support import create_service, create_version, eventually, stays

pytestmark = pytest.mark.integration


def elector(rest: Rest, namespace: str, who: str) -> LeaderElector:
    return LeaderElector(
        rest, namespace, "conch-operator", who, lease_seconds=4, renew_deadline=3, retry=0.5
    )


def holder(api: client.ApiClient, namespace: str) -> str | None:
    lease = client.CoordinationV1Api(api).read_namespaced_lease("conch-operator", namespace)
    return lease.spec.holder_identity


def test_one_leader_then_a_clean_handover(
    api: client.ApiClient, rest: Rest, namespace: str
) -> None:
    a, b = elector(rest, namespace, "a"), elector(rest, namespace, "b")
    assert a.acquire()
    lost = threading.Event()
    a.keep(on_lost=lost.set)
    b_leads = threading.Event()
    waiting = threading.Thread(target=lambda: b.acquire() and b_leads.set(), daemon=True)
    waiting.start()
    try:
        time.sleep(6)  # longer than the lease: a's renewals keep b out
        assert not b_leads.is_set() and holder(api, namespace) == "a"
        released = time.monotonic()
        a.stop(release=True)
        assert b_leads.wait(5)
        assert time.monotonic() - released < 1.5  # one retry, not a lease duration
        assert holder(api, namespace) == "b"
        assert not lost.is_set()
    finally:
        b.stop(release=False)
        waiting.join(timeout=5)


def test_a_crashed_leader_is_replaced_after_its_lease(
    api: client.ApiClient, rest: Rest, namespace: str
) -> None:
    a, b = elector(rest, namespace, "a"), elector(rest, namespace, "b")
    assert a.acquire()
    crashed = time.monotonic()  # a never renews again and releases nothing
    assert b.acquire()
    took = time.monotonic() - crashed
    assert 3.5 <= took <= 4 + 0.5 + 1.5, took  # the lease, one retry, API round trips
    lease = client.CoordinationV1Api(api).read_namespaced_lease("conch-operator", namespace)
    assert (lease.spec.holder_identity, lease.spec.lease_transitions) == ("b", 1)

    # the old leader notices it cannot renew and stops within its renew deadline
    lost = threading.Event()
    a.keep(on_lost=lost.set)
    b.keep(on_lost=lambda: None)
    try:
        assert lost.wait(3 + 2)
    finally:
        a.stop(release=True)  # releases nothing: b holds it
        assert holder(api, namespace) == "b"
        b.stop(release=True)
    eventually(lambda: holder(api, namespace) is None, what="released")


def test_racing_candidates_have_one_winner(
    api: client.ApiClient, rest: Rest, namespace: str
) -> None:
    candidates = [elector(rest, namespace, f"c{i}") for i in range(4)]
    start = threading.Barrier(len(candidates))
    won: list[str] = []

    def attempt(e: LeaderElector) -> None:
        start.wait()
        if e.try_acquire_or_renew():
            won.append(e.identity)

    threads = [threading.Thread(target=attempt, args=(e,)) for e in candidates]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(won) == 1 and holder(api, namespace) == won[0]


def test_the_operator_reconciles_only_while_it_leads(
    api: client.ApiClient,
    rest: Rest,
    cluster: Cluster,
    crds: None,
    namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`conch operator run --leader-elect` (the chart's default): a standby whose Lease is
    held reconciles nothing; once the Lease is free it leads, reconciles, and hands the
    Lease back when it stops."""
    squatter = elector(rest, namespace, "someone-else")
    assert squatter.acquire()
    squatter.keep(on_lost=lambda: None)
    monkeypatch.setenv("POD_NAMESPACE", namespace)
    monkeypatch.setenv("POD_NAME", "operator-1")
    operator = OperatorProcess(
        cluster.kubeconfig,
        tmp_path / "operator.log",
        f"--namespace={namespace}",
        "--leader-elect",
        "--leader-election-id=conch-operator",
    ).start()
    try:
        create_version(api, namespace)
        create_service(api, namespace, autoscaling=None, replicas=1)
        # (the suite's own operator may reconcile this namespace too: count this one's work)
        stays(lambda: reconciles(operator) == 0, 4, what="a standby idle")
        squatter.stop(release=True)
        eventually(lambda: holder(api, namespace) == "operator-1", what="the operator leads")
        eventually(lambda: reconciles(operator) > 0, what="the leader reconciling")
    finally:
        operator.stop()
    eventually(lambda: holder(api, namespace) is None, what="the Lease handed back")


def reconciles(operator: OperatorProcess) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in operator.metrics().splitlines()
        if line.startswith("conch_reconcile_total{")
    )


def test_two_replicas_fail_over_when_the_leader_dies(
    api: client.ApiClient, cluster: Cluster, crds: None, namespace: str, tmp_path: Path
) -> None:
    """The chart's two replicas: only the leader reconciles; SIGKILL it (no handover) and
    the standby takes the Lease once it expires and reconciles a change made meanwhile."""
    replicas = {
        name: OperatorProcess(
            cluster.kubeconfig,
            tmp_path / f"{name}.log",
            f"--namespace={namespace}",
            "--leader-elect",
            "--leader-election-id=conch-operator",
            env={"POD_NAMESPACE": namespace, "POD_NAME": name},
        )
        for name in ("operator-a", "operator-b")
    }
    try:
        for replica in replicas.values():
            replica.start()
        create_version(api, namespace)
        create_service(api, namespace, autoscaling=None, replicas=1)
        eventually(lambda: holder(api, namespace) in replicas, what="one replica leads")
        leader = str(holder(api, namespace))
        (standby,) = set(replicas) - {leader}
        eventually(lambda: reconciles(replicas[leader]) > 0, what="the leader reconciling")
        assert reconciles(replicas[standby]) == 0
        replicas[leader].stop(signal.SIGKILL)
        killed = time.monotonic()
        client.CustomObjectsApi(api).patch_namespaced_custom_object(
            "serving.conch.dev", "v1alpha1", namespace, "modelservices", "digits",
            {"spec": {"replicas": 2}},
        )  # fmt: skip
        eventually(lambda: holder(api, namespace) == standby, 60, what="the standby leads")
        eventually(lambda: reconciles(replicas[standby]) > 0, 30, what="the new leader reconciling")
        eventually(
            lambda: (
                [
                    d.spec.replicas
                    for d in client.AppsV1Api(api).list_namespaced_deployment(namespace).items
                ]
                == [2]
            ),
            30,
            what="the change made while no one led, applied by the new leader",
        )
        assert time.monotonic() - killed < 60
    finally:
        for replica in replicas.values():
            replica.stop()
