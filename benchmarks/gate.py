"""Endpoint gate benchmark: inference through the gate vs straight to Triton, as ratios.

The serving pod runs the gate (runtime/gate: key check against sha256 hashes, then a
reverse proxy) in front of Triton when a ModelService lists consumers. This measures what
that costs: one real tritonserver (Python backend, a tiny echo model, so the proxy's share
is as large as it gets) and one gate in front of it holding 64 consumers' hashes, both on
127.0.0.1 and pinned to one core (they share the pod's CPU); `wrk` (compiled, on the other
core, `post.lua` beside this file) sends KServe v2 JSON inferences at 1 and 8 connections,
alternating direct and gated runs `--rounds` times. Every gated request carries a valid
key; a run with more than 1% failed requests fails the benchmark. The table gives the median of the
rounds: requests/s, p50 and p99 (wrk's histogram) and gate/direct ratios.

    .venv/bin/python benchmarks/gate.py [--duration 5] [--rounds 3]

Target: p50 and p99 within 1.2x of direct at 1 connection, requests/s at least 0.8x.
Needs `wrk` and Go (the gate is built once into the cache), and 2 CPUs it may use.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from conch.dev.gate import Gate, write_hashes
from conch_runtime.triton import TritonServer

LUA = Path(__file__).with_name("post.lua")
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
        return [
            pb_utils.InferenceResponse(
                [pb_utils.Tensor("y", pb_utils.get_input_tensor_by_name(r, "x").as_numpy() * 2)]
            )
            for r in requests
        ]
"""
BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [4], "data": [1, 2, 3, 4]}]}
KEY = "bench-consumer-key-0123456789abcdef"


@dataclass(frozen=True)
class Result:
    requests_per_s: float
    p50_ms: float
    p99_ms: float


@contextlib.contextmanager
def pinned(cpu: int) -> Iterator[None]:
    """Processes started in the block inherit the affinity to `cpu`."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def wrk(url: str, body: Path, connections: int, seconds: int, cpu: int, key: str | None) -> Result:
    binary = shutil.which("wrk")
    if binary is None:
        raise SystemExit("this benchmark needs wrk: apt-get install -y wrk")
    argv = ["taskset", "-c", str(cpu), binary, "-t1", f"-c{connections}", f"-d{seconds}s"]
    if key is not None:
        argv += ["-H", f"conch-endpoint-key: {key}"]
    argv += ["--timeout", "10s", "-s", str(LUA), url, "--", str(body)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}{done.stderr}")
    figures = json.loads(lines[-1])
    errors = sum(figures[k] for k in ("connect", "read", "write", "status", "timeout"))
    if errors > figures["requests"] / 100:
        raise RuntimeError(f"{url}: {errors} failed requests: {figures}")
    return Result(
        figures["requests"] / (figures["duration_us"] / 1e6),
        figures["p50_us"] / 1000,
        figures["p99_us"] / 1000,
    )


def median(results: list[Result]) -> Result:
    return Result(
        statistics.median(r.requests_per_s for r in results),
        statistics.median(r.p50_ms for r in results),
        statistics.median(r.p99_ms for r in results),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="direct/gated pairs per setting")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit(f"needs 2 CPUs (server, load generator); this process may use {cpus}")
    server_cpu, load_cpu = cpus[0], cpus[1]
    with tempfile.TemporaryDirectory(prefix="conch-gate-bench-") as tmp:
        root = Path(tmp)
        (root / "repo" / "echo" / "1").mkdir(parents=True)
        (root / "repo" / "echo" / "config.pbtxt").write_text(CONFIG)
        (root / "repo" / "echo" / "1" / "model.py").write_text(MODEL)
        body = root / "body.json"
        body.write_text(json.dumps(BODY))
        (root / "gate").mkdir()
        consumers = {f"consumer-{i}": f"key-{i}-{os.urandom(8).hex()}" for i in range(63)}
        write_hashes(root / "gate" / "hashes.json", {**consumers, "bench": KEY})
        with (
            pinned(server_cpu),
            TritonServer([root / "repo"]) as triton,
            Gate(triton.http_port, triton.grpc_port, root / "gate" / "hashes.json") as gate,
        ):
            infer = "/v2/models/echo/infer"
            direct_url = f"http://127.0.0.1:{triton.http_port}{infer}"
            gated_url = f"http://127.0.0.1:{gate.http_port}{infer}"
            wrk(gated_url, body, 1, 1, load_cpu, KEY)  # warm-up, and proof the key works
            rows = []
            for connections in args.connections:
                direct, gated = [], []
                for round_ in range(args.rounds):
                    print(f"  {connections} connection(s), round {round_ + 1}", flush=True)
                    direct.append(wrk(direct_url, body, connections, args.duration, load_cpu, None))
                    gated.append(wrk(gated_url, body, connections, args.duration, load_cpu, KEY))
                rows.append((connections, median(direct), median(gated)))
    print(f"\n{'conns':>5} {'path':>7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for connections, d, g in rows:
        for name, r in (("direct", d), ("gate", g)):
            print(
                f"{connections:>5} {name:>7} {r.requests_per_s:>9.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f}"
            )
        print(
            f"{connections:>5} {'ratio':>7} {g.requests_per_s / d.requests_per_s:>8.2f}x"
            f" {g.p50_ms / d.p50_ms:>7.2f}x {g.p99_ms / d.p99_ms:>7.2f}x   (gate / direct)"
        )


if __name__ == "__main__":
    main()
