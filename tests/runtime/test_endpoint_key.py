"""Endpoint keys on real processes: the gate (runtime/gate) in front of a real tritonserver
(the nvidia-pytriton wheel's), both on loopback, as the serving pod runs them.

A consumer with its key is answered over HTTP and gRPC; no key, a wrong key or a revoked
one is refused; a rotated key works once the hashes file changes (as a Secret volume
changes: the `..data` link swapped), with no restart; health stays open for kubelet's
probes. And Triton alone holds one key per API group (a second value is a start-up error),
which is why the gate exists (docs/catalog.md).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from conch.dev.gate import Gate, write_hashes
from conch_runtime.tool_errors import ServerError
from conch_runtime.triton import TritonServer

KEYS = {"app-a": "key-of-app-a-0123456789", "app-b": "key-of-app-b-0123456789"}
OWNER_KEY = "owner-key-from-keySecretRef"
CONFIG = """
name: "echo"
backend: "python"
max_batch_size: 0
input [{ name: "x", data_type: TYPE_FP32, dims: [ 4 ] }]
output [{ name: "y", data_type: TYPE_FP32, dims: [ 4 ] }]
"""
MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "x").as_numpy()
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("y", x * 2)]))
        return out
"""
BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [4], "data": [1, 2, 3, 4]}]}


def repository(root: Path) -> Path:
    (root / "echo" / "1").mkdir(parents=True)
    (root / "echo" / "config.pbtxt").write_text(CONFIG)
    (root / "echo" / "1" / "model.py").write_text(MODEL)
    return root


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    with TritonServer([repository(tmp_path_factory.mktemp("repo"))]) as server:
        yield server


@pytest.fixture
def gate(triton: TritonServer, tmp_path: Path) -> Iterator[Gate]:
    (tmp_path / "gate").mkdir()
    hashes = tmp_path / "gate" / "hashes.json"
    write_hashes(hashes, KEYS)
    owner = tmp_path / "owner-key"
    owner.write_text(OWNER_KEY + "\n")
    with Gate(triton.http_port, triton.grpc_port, hashes, (owner,)) as running:
        yield running


def http(port: int, path: str, headers: dict[str, str], body: object = None) -> int:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data, headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def eventually(check: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, 401),
        ({"conch-endpoint-key": "wrong"}, 401),
        ({"conch-endpoint-key": KEYS["app-a"]}, 200),
        ({"Conch-Endpoint-Key": KEYS["app-b"]}, 200),  # header names are case-insensitive
        ({"conch-endpoint-key": OWNER_KEY}, 200),  # keySecretRef, the degenerate case
    ],
)
def test_http_needs_a_consumers_key(gate: Gate, headers: dict[str, str], expected: int) -> None:
    assert http(gate.http_port, "/v2/models/echo/infer", headers, BODY) == expected
    assert http(gate.http_port, "/v2/models/echo", headers) == expected  # metadata too
    assert http(gate.http_port, "/v2/models/echo/stats", headers) == expected


def test_health_stays_open_for_probes(gate: Gate) -> None:
    assert http(gate.http_port, "/v2/health/ready", {}) == 200
    assert http(gate.http_port, "/v2/health/live", {}) == 200


def infer(port: int, headers: dict[str, str]) -> list[float]:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        x = grpcclient.InferInput("x", [4], "FP32")
        x.set_data_from_numpy(np.arange(4, dtype=np.float32))
        return list(client.infer("echo", [x], headers=headers).as_numpy("y").tolist())
    finally:
        client.close()


def test_grpc_needs_a_consumers_key(gate: Gate) -> None:
    for headers in ({}, {"conch-endpoint-key": "wrong"}):
        with pytest.raises(InferenceServerException, match="conch-endpoint-key"):
            infer(gate.grpc_port, headers)
    assert infer(gate.grpc_port, {"conch-endpoint-key": KEYS["app-a"]}) == [0.0, 2.0, 4.0, 6.0]
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{gate.grpc_port}")
    assert client.is_server_ready()  # health: no key
    assert client.is_server_live()
    client.close()


def test_rotation_and_revocation_need_no_restart(gate: Gate) -> None:
    """app-a rotated, app-b revoked: the new hashes reach the gate through the file alone."""
    new_a = "rotated-key-of-app-a-987654"
    write_hashes(gate.hashes, {"app-a": new_a})

    def answered(key: str) -> bool:
        return (
            http(gate.http_port, "/v2/models/echo/infer", {"conch-endpoint-key": key}, BODY) == 200
        )

    eventually(lambda: answered(new_a), "the rotated key admitted")
    assert not answered(KEYS["app-a"])  # the old key stops working
    assert not answered(KEYS["app-b"])  # revoked
    assert answered(OWNER_KEY)
    assert infer(gate.grpc_port, {"conch-endpoint-key": new_a}) == [0.0, 2.0, 4.0, 6.0]
    with pytest.raises(InferenceServerException, match="conch-endpoint-key"):
        infer(gate.grpc_port, {"conch-endpoint-key": KEYS["app-b"]})


def test_triton_holds_one_key_per_api_group(tmp_path: Path) -> None:
    """Two consumers' keys for the same APIs: tritonserver refuses to start."""
    first, second = (f"--http-restricted-api=inference:conch-endpoint-key={k}" for k in "ab")
    with pytest.raises(ServerError) as refused:
        TritonServer([repository(tmp_path)], extra_args=[first, second], startup_timeout=60).start()
    assert "can not be specified in multiple config groups" in str(refused.value)
