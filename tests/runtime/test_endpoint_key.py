"""The endpoint key, held by a real tritonserver (the nvidia-pytriton wheel's) on loopback.

Triton itself refuses a caller without the key, over HTTP and gRPC, with the exact flags the
operator puts in serving pods (`conch.endpointkey.triton_args`); health stays open for
kubelet's probes. And Triton holds one key per API group: a second value is a start-up
error, which is why Conch's key is per ModelService, not per consumer (docs/catalog.md).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from conch import endpointkey
from conch_runtime.tool_errors import ServerError
from conch_runtime.triton import TritonServer

KEY = "k3y-for-team-b-0123456789abcdef"
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
    repo = repository(tmp_path_factory.mktemp("repo"))
    with TritonServer([repo], extra_args=endpointkey.triton_args(KEY)) as server:
        yield server


def http(server: TritonServer, path: str, headers: dict[str, str], body: object = None) -> int:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://{server.http_url}{path}", data, headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, 403),
        ({"conch-endpoint-key": "wrong"}, 403),
        ({"Conch-Endpoint-Key": KEY}, 200),  # header names are case-insensitive
    ],
)
def test_http_inference_needs_the_key(
    triton: TritonServer, headers: dict[str, str], expected: int
) -> None:
    assert http(triton, "/v2/models/echo/infer", headers, BODY) == expected
    assert http(triton, "/v2/models/echo", headers) == expected  # metadata too
    assert http(triton, "/v2/models/echo/stats", headers) == expected


def test_health_stays_open_for_probes(triton: TritonServer) -> None:
    assert http(triton, "/v2/health/ready", {}) == 200
    assert http(triton, "/v2/health/live", {}) == 200


def test_grpc_inference_needs_the_key(triton: TritonServer) -> None:
    grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{triton.grpc_port}")
    x = grpcclient.InferInput("x", [4], "FP32")
    x.set_data_from_numpy(np.arange(4, dtype=np.float32))
    for headers in ({}, {endpointkey.HEADER: KEY}, {endpointkey.GRPC_HEADER: "wrong"}):
        with pytest.raises(InferenceServerException, match="restricted"):
            grpc.infer("echo", [x], headers=headers)
    answer = grpc.infer("echo", [x], headers={endpointkey.GRPC_HEADER: KEY})
    assert answer.as_numpy("y").tolist() == [0.0, 2.0, 4.0, 6.0]
    assert grpc.is_server_ready()  # health: no key
    grpc.close()


def test_triton_holds_one_key_per_api_group(tmp_path: Path) -> None:
    """Two consumers' keys for the same APIs: tritonserver refuses to start."""
    first, second = endpointkey.triton_args("key-a")[0], endpointkey.triton_args("key-b")[0]
    with pytest.raises(ServerError) as refused:
        TritonServer([repository(tmp_path)], extra_args=[first, second], startup_timeout=60).start()
    assert "can not be specified in multiple config groups" in str(refused.value)
