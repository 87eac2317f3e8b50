"""The sandbox's real-node wiring: the operator flags `cluster up --real-node` passes, read
back by the operator's own parser, allow exactly what `conch dev demo` creates."""

from __future__ import annotations

import argparse
import re
from typing import Any

import numpy as np
import pytest

from conch import operator_main
from conch.api import ModelService, ModelVersion
from conch.artifacts import ArtifactAccess, check
from conch.dev import netplan
from conch.dev.cluster import SANDBOX_BUCKET, SANDBOX_POLICY_ARGS, real_node_operator_args
from conch.dev.demo import SECRET, comparison_rows, model_service
from conch.errors import CredentialsNotAllowed
from conch.policy import PodPolicy, violations

BRIDGE = netplan.bridge_address(next(netplan.CANDIDATES.subnets(new_prefix=24))).ip
"""The sandbox bridge's own address, where the demo's S3 store listens (never dialled here)."""
ENDPOINT = f"http://{BRIDGE}:41234"
TRITON = "ghcr.io/conch-serving/conch-triton-cpu:0.1.0"
RUNTIME = "ghcr.io/conch-serving/conch-runtime:0.1.0"


def operator_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    operator_main.add_arguments(parser)
    return parser.parse_args(list(argv))


def real_args() -> argparse.Namespace:
    return operator_args(*SANDBOX_POLICY_ARGS, *real_node_operator_args(ENDPOINT, RUNTIME, TRITON))


def test_real_node_flags_keep_every_policy_default_and_add_the_node() -> None:
    args = real_args()
    policy, defaults = operator_main.pod_policy(args), PodPolicy()
    assert set(defaults.allowed_toleration_keys) < set(policy.allowed_toleration_keys)
    assert set(defaults.allowed_node_selector_keys) < set(policy.allowed_node_selector_keys)
    assert set(defaults.allowed_triton_images) < set(policy.allowed_triton_images)
    assert args.runtime_image == RUNTIME
    assert args.s3_endpoint == ENDPOINT


def test_the_demo_model_service_passes_the_sandbox_policy() -> None:
    svc = ModelService.model_validate(
        {**model_service("digits", "digits-1.0.0", TRITON), "metadata": {"name": "digits"}}
    )
    assert violations(svc.spec, operator_main.pod_policy(real_args())) == []
    assert violations(svc.spec, PodPolicy()) != []  # the defaults alone refuse it


def pushed(uri: str) -> ModelVersion:
    source: dict[str, Any] = {
        "uri": uri,
        "sha256": "0" * 64,
        "credentialsSecretRef": {"name": SECRET},
    }
    return ModelVersion.model_validate(
        {
            "metadata": {"name": "digits-1.0.0", "namespace": "conch-demo"},
            "spec": {
                "model": "digits",
                "version": "1.0.0",
                "format": "python",
                "source": source,
                "signature": {
                    "inputs": [{"name": "pixels", "dataType": "TYPE_FP32", "dims": [64]}],
                    "outputs": [{"name": "logits", "dataType": "TYPE_FP32", "dims": [10]}],
                },
            },
        }
    )


def test_the_demo_secret_may_go_only_to_the_sandbox_store() -> None:
    access = operator_main.artifact_access(real_args())
    meta = {"metadata": {"labels": {"serving.conch.dev/artifact-credentials": "true"}}}
    uri = f"s3://{SANDBOX_BUCKET}/models/digits-1.0.0.tar.gz"
    assert check(pushed(uri), meta, access) == [SANDBOX_BUCKET, f"{BRIDGE}:41234"]
    elsewhere = ArtifactAccess(access.credentials_hosts, s3_endpoint=f"http://{BRIDGE}:9")
    with pytest.raises(CredentialsNotAllowed, match=re.escape(f"{BRIDGE}:9") + r"\b"):
        check(pushed(uri), meta, elsewhere)


def test_comparison_rows_show_argmax_and_largest_difference() -> None:
    expected = np.array([[0.0, 3.0, 1.0], [2.0, 0.0, 0.0]], dtype=np.float32)
    served = expected + np.array([[0.0, 0.0, 0.5], [0.0, 0.0, 0.0]], dtype=np.float32)
    rows = comparison_rows(served, expected)
    assert rows == [
        ("0", "1 (3.0000)", "1 (3.0000)", "5.00e-01"),
        ("1", "0 (2.0000)", "0 (2.0000)", "0.00e+00"),
    ]


def _pod(name: str, ip: str | None, ready: bool, version: str, deleting: bool = False) -> Any:
    from kubernetes import client

    return client.V1Pod(
        metadata=client.V1ObjectMeta(
            name=name,
            labels={"serving.conch.dev/version": version},
            deletion_timestamp="2026-01-01T00:00:00Z" if deleting else None,
        ),
        status=client.V1PodStatus(
            pod_ip=ip,
            conditions=[client.V1PodCondition(type="Ready", status=str(ready))],
        ),
    )


def test_load_goes_only_to_ready_pods_on_the_bridge() -> None:
    import ipaddress

    from conch.dev import netplan
    from conch.dev.podload import Endpoint, ready_endpoints

    net = ipaddress.IPv4Network("10.213.0.0/24")
    pods = [
        _pod("b", "10.213.0.3", True, "v2"),
        _pod("a", "10.213.0.2", True, "v1"),
        _pod("starting", "10.213.0.4", False, "v2"),
        _pod("leaving", "10.213.0.5", True, "v1", deleting=True),
        _pod("pending", None, True, "v1"),
    ]
    found = ready_endpoints(pods, lambda ip: netplan.dialable_pod_ip(ip, net))
    assert found == [Endpoint("10.213.0.2", "a", "v1"), Endpoint("10.213.0.3", "b", "v2")]
    with pytest.raises(ValueError):
        ready_endpoints(
            [_pod("x", "127.0.0.1", True, "v1")], lambda ip: netplan.dialable_pod_ip(ip, net)
        )


def test_infer_body_names_triton_datatypes() -> None:
    import json

    from conch.dev.podload import infer_body

    body = json.loads(infer_body({"pixels": np.zeros((2, 3), dtype=np.float32)}))
    assert body == {
        "inputs": [{"name": "pixels", "datatype": "FP32", "shape": [2, 3], "data": [0.0] * 6}]
    }


def test_progress_line_shows_phase_weight_and_requests_per_version() -> None:
    from conch.dev.demo import progress_line

    status = {
        "phase": "Progressing",
        "stable": {"version": "digits-1.0.0"},
        "canary": {"version": "digits-2.0.0", "weight": 50},
    }
    line = progress_line(12.34, status, {"digits-2.0.0": 7, "digits-1.0.0": 9}, {"digits-1.0.0": 1})
    assert line == (
        " 12.3s  Progressing stable digits-1.0.0, canary digits-2.0.0 at 50%; "
        "answered: digits-1.0.0 9, digits-2.0.0 7; failed: 1"
    )
    assert progress_line(0, {}, {}, {}) == "  0.0s  -           stable -; answered: none yet"
