"""`conch rollout` driving a timed canary on the real control plane, with a user's rights.

The CLI runs as a child process with a kubeconfig holding the token of an account that
may only get and patch ModelServices in the namespace: it needs nothing more, and writes nothing
but the spec field and annotations a person would write with kubectl.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from conch.dev.cluster import Cluster
from conch.dev.operator import OperatorProcess
from tests.support import GROUP, create_service, create_version, eventually, get_service

pytestmark = pytest.mark.integration

TIMED = {  # each step holds an hour: only the CLI moves this rollout
    "steps": [{"weight": 30, "pause": "1h"}, {"weight": 60, "pause": "1h"}],
    "analysis": {"enabled": False},
}
Conch = Callable[..., subprocess.CompletedProcess[str]]


def grant(api: client.ApiClient, ns: str, user: str, verbs: list[str]) -> None:
    """A ServiceAccount `user` in `ns` that may only do `verbs` on ModelServices there."""
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    core.create_namespaced_service_account(ns, {"metadata": {"name": user}})
    rule = {"apiGroups": [GROUP], "resources": ["modelservices"], "verbs": verbs}
    rbac.create_namespaced_role(ns, {"metadata": {"name": user}, "rules": [rule]})
    rbac.create_namespaced_role_binding(
        ns,
        {
            "metadata": {"name": user},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": user},
            "subjects": [{"kind": "ServiceAccount", "name": user, "namespace": ns}],
        },
    )


def conch_as(cluster: Cluster, api: client.ApiClient, ns: str, user: str, tmp_path: Path) -> Conch:
    """`conch rollout ...` with a kubeconfig holding only `user`'s token, in `ns`. (A
    kubeconfig's `as:` would not do: the Python client ignores impersonation settings.)"""
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
    )
    token = client.CoreV1Api(api).create_namespaced_service_account_token(user, ns, request)
    kubeconfig = yaml.safe_load(cluster.kubeconfig.read_text())
    kubeconfig["users"] = [{"name": user, "user": {"token": token.status.token}}]
    for context in kubeconfig["contexts"]:
        context["context"] |= {"user": user, "namespace": ns}
    path = tmp_path / f"{user}.kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig))
    env = {**os.environ, "KUBECONFIG": str(path), "COLUMNS": "200"}

    def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "conch.cli", "rollout", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run


def status_of(api: client.ApiClient, ns: str) -> dict[str, Any]:
    return dict(get_service(api, ns).get("status", {}))


def in_phase(api: client.ApiClient, ns: str, phase: str, **fields: Any) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        s = status_of(api, ns)
        ok = s.get("phase") == phase and all(s.get(k) == v for k, v in fields.items())
        return s if ok else None

    return eventually(check, 60, what=f"phase {phase} {fields}")


def start_rollout(api: client.ApiClient, ns: str, to: str) -> None:
    """The user changes spec.modelVersion (with kubectl; the CLI steers, it does not deploy)."""
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP, "v1alpha1", ns, "modelservices", "digits", {"spec": {"modelVersion": to}}
    )
    eventually(
        lambda: (s := status_of(api, ns)).get("stepStartedAt") and s["canary"]["version"] == to,
        60,
        what=f"the first step toward {to}",
    )


def test_conch_rollout_steers_a_canary_with_the_callers_rights(
    cluster: Cluster,
    api: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    grant(api, namespace, "carol", ["get", "patch"])
    carol = conch_as(cluster, api, namespace, "carol", tmp_path)
    for version in ("digits-v1", "digits-v2", "digits-v3"):
        create_version(api, namespace, version)
    create_service(
        api, namespace, autoscaling=None, replicas=2, resources={"gpus": 1}, rollout=TIMED
    )
    in_phase(api, namespace, "Stable")
    start_rollout(api, namespace, "digits-v2")

    shown = carol("status", "digits")
    assert shown.returncode == 0, shown.stderr
    assert "digits: Progressing  step 1/2  target digits-v2" in shown.stdout
    assert "30%" in shown.stdout and "60%" in shown.stdout  # the steps' weights
    assert "digits-v1" in shown.stdout and "canary" in shown.stdout

    assert carol("pause", "digits").returncode == 0
    assert get_service(api, namespace)["spec"]["rollout"]["paused"] is True
    in_phase(api, namespace, "Paused", step=0)
    paused = carol("status", "digits")
    assert "digits: Paused  step 1/2" in paused.stdout and "(spec.rollout.paused)" in paused.stdout

    assert carol("promote", "digits").returncode == 0  # a paused canary may be promoted
    promoted = in_phase(api, namespace, "Stable")
    assert promoted["stable"]["version"] == "digits-v2"
    assert promoted["rolloutHistory"][-1]["reason"] == "PromoteRequested"
    annotations = get_service(api, namespace)["metadata"].get("annotations") or {}
    assert "serving.conch.dev/promote" not in annotations  # consumed by the operator
    assert carol("resume", "digits").returncode == 0
    assert get_service(api, namespace)["spec"]["rollout"]["paused"] is False

    start_rollout(api, namespace, "digits-v3")
    assert carol("abort", "digits").returncode == 0
    watched = carol("status", "digits", "--watch", "--timeout", "60", "--interval", "0.5")
    assert watched.returncode == 1, watched.stderr  # RolledBack
    assert "digits: RolledBack" in watched.stdout and "Aborted" in watched.stdout

    assert carol("retry", "digits").returncode == 0
    in_phase(api, namespace, "Progressing", step=0)
    bounded = carol("status", "digits", "-w", "--timeout", "3", "--interval", "0.5")
    assert bounded.returncode == 2 and "timed out after 3s" in bounded.stderr  # an hour's step

    assert carol("promote", "digits").returncode == 0
    done = carol("status", "digits", "-w", "--timeout", "60", "--interval", "0.5", timeout=90)
    assert done.returncode == 0, done.stderr
    assert "digits: Stable  target digits-v3" in done.stdout
    assert status_of(api, namespace)["stable"]["version"] == "digits-v3"


def test_conch_rollout_without_the_right_to_patch_changes_nothing(
    cluster: Cluster,
    api: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    grant(api, namespace, "victor", ["get"])
    victor = conch_as(cluster, api, namespace, "victor", tmp_path)
    create_version(api, namespace, "digits-v1")
    create_service(api, namespace, autoscaling=None, replicas=1, resources={"gpus": 1})
    before = get_service(api, namespace)
    refused = victor("pause", "digits")
    assert refused.returncode == 1 and "forbidden" in refused.stderr.lower()
    after = get_service(api, namespace)
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert victor("status", "digits").returncode == 0  # reading needs only get
