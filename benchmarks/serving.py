"""Serving benchmark: a packaged model on Triton (fp32 and int8) vs Flask and FastAPI.

Trains a 64-512-512-10 MLP on scikit-learn's bundled digits data set (no download) in
seconds, packages it with `conch_runtime.package` (python format: Triton's Python backend,
one instance, one torch thread, dynamic batching up to 64 with no queue delay by default:
requests that arrive while a batch runs make the next one; `--queue-delay-us 2000`, the
ServingOptions default, waits up to 2 ms for more, which costs latency at 1 connection) and
serves that one model file three ways, each on 127.0.0.1 and pinned to one core:

- triton:  the real tritonserver (`conch_runtime.triton.TritonServer`), KServe v2 JSON;
- int8:    the same model packaged with `--int8` (static x86 int8, calibrated on 512 training
           digits; a TorchScript file the Python backend runs), in the same tritonserver;
- flask:   Flask's server with `threaded=False`, one request at a time, torch on 1 thread;
- fastapi: FastAPI under uvicorn (1 worker, an async endpoint), torch on 1 thread.

Each server's logits for one digit are checked against the packaged file's before anything is
measured. Then `wrk` (compiled; pinned to another core with taskset; `post.lua` beside this
file) drives each at 1, 8 and 32 connections for a fixed duration, and the table gives
requests/s, p50 and p99 (wrk's histogram), and each against Flask's at the same concurrency.
Ratios, not absolute figures, are comparable on a shared machine. Every process is stopped
by its pid, whatever happens, and its process group checked empty before the table prints;
progress is printed (flushed) through the load phase, which is silent for minutes otherwise.

Targets: Triton at least 3x Flask's requests/s at 32 connections, p99 no worse; the int8
package at least fp32's requests/s at 32 connections (issue 15).

    .venv/bin/python benchmarks/serving.py [--duration 10] [--warmup 2] [--queue-delay-us 0]

Needs `wrk` (`apt-get install -y wrk`; run as root, the script installs it) and the dev extra
(flask, fastapi, uvicorn), and 2 CPUs it may use.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from pydantic import BaseModel
from torch import nn

from conch.dev.process import free_port, http_ok, spawn, stop_pid, wait_until

if TYPE_CHECKING:
    from conch_runtime.triton import TritonServer

HOST = "127.0.0.1"
NAME = "digits"
HIDDEN = 512
CONNECTIONS = (1, 8, 32)
SERVERS = ("triton", "int8", "flask", "fastapi")
TARGET_SPEEDUP = 3.0
LUA = Path(__file__).resolve().with_name("post.lua")


class MLP(nn.Module):
    def __init__(self, hidden: int = HIDDEN) -> None:
        super().__init__()
        sizes = [64, hidden, hidden]
        blocks: list[nn.Module] = []
        for a, b in itertools.pairwise(sizes):
            blocks += [nn.Linear(a, b), nn.ReLU()]
        self.body = nn.Sequential(*blocks, nn.Linear(hidden, 10))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.body(pixels)
        return logits


class Inputs(BaseModel):
    """The Flask/FastAPI request body: a batch of 8x8 digits, 64 values each in [0, 1]."""

    pixels: list[list[float]]


def train(epochs: int) -> tuple[nn.Module, torch.Tensor, float, torch.Tensor]:
    """The trained MLP, the held-out digits, its accuracy on them, and 512 training digits
    (the int8 package's calibration data)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target, dtype=torch.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    torch.manual_seed(0)
    model = MLP()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        order = torch.randperm(len(xtr))
        for start in range(0, len(xtr), 64):
            idx = order[start : start + 64]
            loss = nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(xte).argmax(1) == yte).float().mean())
    return model, xte, accuracy, xtr[:512]


# The hand-written servers: this file run as `serving.py --serve flask|fastapi ...`.


def _load(model_file: Path) -> Callable[[list[list[float]]], list[list[float]]]:
    """The packaged model file, run the way the packager validated it, on one thread."""
    from conch_runtime.export import load_saved

    torch.set_num_threads(1)
    run = load_saved(model_file)

    def predict(pixels: list[list[float]]) -> list[list[float]]:
        logits: list[list[float]] = run(torch.tensor(pixels, dtype=torch.float32))[0].tolist()
        return logits

    return predict


def serve_flask(model_file: Path, port: int) -> None:
    """Flask's own server, one request at a time (HTTP/1.0: a connection per request)."""
    import logging

    from flask import Flask, Response, jsonify, request

    predict = _load(model_file)
    app = Flask("conch-bench-flask")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request

    @app.post("/predict")
    def infer() -> Response:
        return jsonify(logits=predict(request.get_json()["pixels"]))

    @app.get("/health")
    def health() -> str:
        return "ok"

    app.run(host=HOST, port=port, threaded=False)


def serve_fastapi(model_file: Path, port: int) -> None:
    """FastAPI under uvicorn, one worker. The endpoint is `async def`: the model runs on the
    event loop, one request at a time; a sync `def` endpoint (FastAPI's thread pool) measured
    slower here on one core, with a much worse p99."""
    import uvicorn
    from fastapi import FastAPI

    predict = _load(model_file)
    app = FastAPI()

    @app.post("/predict")
    async def infer(inputs: Inputs) -> dict[str, list[list[float]]]:
        return {"logits": predict(inputs.pixels)}

    @app.get("/health")
    def health() -> str:
        return "ok"

    uvicorn.run(app, host=HOST, port=port, workers=1, log_level="warning", access_log=False)


# The benchmark.


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str
    body: bytes
    logits: Callable[[dict[str, Any]], list[float]]
    """The logits of the one sample in a response body."""


@dataclass(frozen=True)
class Result:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


def ensure_wrk() -> str:
    """The wrk binary; installed with apt-get when missing and run as root, else SystemExit."""
    found = shutil.which("wrk")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk is missing: apt-get install -y wrk", flush=True)
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=False, stdout=subprocess.DEVNULL)
        found = shutil.which("wrk")
    if found is None:
        raise SystemExit("this benchmark needs wrk: apt-get install -y wrk (as root)")
    return found


@contextlib.contextmanager
def pinned(cpu: int) -> Iterator[None]:
    """Run the block on `cpu` only: processes started in it inherit the affinity."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def group_members(pgid: int) -> list[Path]:
    """The /proc entries of the live (not zombie) processes in process group `pgid`."""
    members = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(proc)
    return members


def check_pinned(pgid: int, cpu: int) -> int:
    """How many threads the process group `pgid` has; AssertionError if one may leave `cpu`."""
    threads = 0
    for proc in group_members(pgid):
        try:
            for task in (proc / "task").iterdir():
                allowed = os.sched_getaffinity(int(task.name))
                assert allowed == {cpu}, f"thread {task.name} of {pgid} may run on {allowed}"
                threads += 1
        except (OSError, ValueError):
            continue  # gone meanwhile
    assert threads, f"no process in group {pgid}"
    return threads


def stop_servers(triton: TritonServer, pids: dict[str, int]) -> None:
    """Stop every server this run started, by pid (each in its own process group), and
    check that no process of those groups is left: a stray one (a Triton Python-backend
    stub, a uvicorn child) would outlive the benchmark. Timed, so a slow stop shows."""
    began = time.monotonic()
    triton.stop(timeout=10)
    for name, pid in pids.items():
        if name != "triton":
            stop_pid(pid, grace=5)
    left = {name: [p.name for p in group_members(pid)] for name, pid in pids.items()}
    left = {name: members for name, members in left.items() if members}
    print(
        f"servers stopped by pid in {time.monotonic() - began:.1f}s: {', '.join(pids)}",
        flush=True,
    )
    if left:
        raise RuntimeError(f"processes left after stopping the servers: {left}")


def post(url: str, body: bytes) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        result: dict[str, Any] = json.loads(answer.read())
    return result


def start_python_server(kind: str, model_file: Path, workdir: Path) -> tuple[int, int]:
    """Start `serving.py --serve KIND` in its own session; (pid, port) once it is healthy."""
    port = free_port()
    log = workdir / f"{kind}.log"
    argv = [sys.executable, str(Path(__file__).resolve()), "--serve", kind]
    argv += ["--model-file", str(model_file), "--port", str(port)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = spawn(argv, log, env=env)
    try:
        wait_until(kind, lambda: http_ok(f"http://{HOST}:{port}/health"), 60, log, process)
    except BaseException:
        stop_pid(process.pid)
        raise
    return process.pid, port


def run_wrk(
    wrk: str, endpoint: Endpoint, body_file: Path, connections: int, seconds: int, cpu: int
) -> Result:
    """One wrk run (one thread) pinned to `cpu`; its figures from post.lua's JSON line."""
    argv = ["taskset", "-c", str(cpu), wrk, "-t1", f"-c{connections}", f"-d{seconds}s"]
    argv += ["--timeout", "10s", "-s", str(LUA), endpoint.url, "--", str(body_file)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}{done.stderr}")
    figures = json.loads(lines[-1])
    errors = sum(figures[k] for k in ("connect", "read", "write", "status", "timeout"))
    return Result(
        requests_per_s=figures["requests"] / (figures["duration_us"] / 1e6),
        p50_ms=figures["p50_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        errors=errors,
    )


def package_both(
    model: Any, test_x: Any, calibration: Any, serving: Any, workdir: Path
) -> tuple[Any, Any, Path, list[float], list[float]]:
    """The fp32 package and the int8 one: both results, the fp32 model file, and what each
    file computes for the first held-out digit."""
    from conch_runtime.compress import CompressionOptions
    from conch_runtime.data import Dataset
    from conch_runtime.export import load_saved
    from conch_runtime.package import PackageRequest, package

    result = package(
        model,
        workdir / "package",
        PackageRequest(
            name=NAME,
            version="1",
            example={"pixels": test_x[:8]},
            output_names=["logits"],
            serving=serving,
        ),
    )
    int8 = package(
        model,
        workdir / "int8",
        PackageRequest(
            name=f"{NAME}-int8",
            version="1",
            example={"pixels": test_x[:8]},
            output_names=["logits"],
            validation={"pixels": test_x},
            compression=CompressionOptions(int8=True, calibration=Dataset({"pixels": calibration})),
            serving=serving,
        ),
    )
    model_file = next(result.repository.glob(f"{NAME}/1/model.pt*"))
    int8_file = next(int8.repository.glob(f"{NAME}-int8/1/model.pt*"))
    sample = test_x[:1]
    reference = load_saved(model_file)(sample)[0][0].tolist()
    int8_reference = load_saved(int8_file)(sample)[0][0].tolist()
    print(
        f"int8 package: {int8_file.name}, top-1 agreement with fp32 on the held-out digits "
        f"{int8.compression.accuracy:.4f}, artifact "
        f"{result.size_bytes / int8.size_bytes:.2f}x smaller",
        flush=True,
    )
    return result, int8, model_file, reference, int8_reference


def load(
    wrk: str, endpoints: list[Endpoint], workdir: Path, args: argparse.Namespace, load_cpu: int
) -> dict[tuple[str, int], Result]:
    """A warm-up per server, then every server side by side at each concurrency."""
    runs = len(endpoints) * (args.warmup + len(CONNECTIONS) * args.duration)
    print(f"wrk: {len(endpoints)} servers, about {runs}s of load", flush=True)
    bodies = {}
    for endpoint in endpoints:
        bodies[endpoint.name] = workdir / f"{endpoint.name}.json"
        bodies[endpoint.name].write_bytes(endpoint.body)
        run_wrk(wrk, endpoint, bodies[endpoint.name], 8, args.warmup, load_cpu)
    results: dict[tuple[str, int], Result] = {}
    for connections in CONNECTIONS:
        for endpoint in endpoints:
            results[endpoint.name, connections] = run_wrk(
                wrk, endpoint, bodies[endpoint.name], connections, args.duration, load_cpu
            )
        print(
            f"  {connections} connections: {len(endpoints)} x {args.duration:g}s done", flush=True
        )
    return results


def check_logits(
    endpoints: list[Endpoint], reference: list[float], int8_reference: list[float]
) -> None:
    """Every server answers what its packaged file computes."""
    for endpoint in endpoints:
        got = endpoint.logits(post(endpoint.url, endpoint.body))
        want = int8_reference if endpoint.name == "int8" else reference
        diff = max(abs(a - b) for a, b in zip(got, want, strict=True))
        assert diff <= 1e-4, f"{endpoint.name} logits differ by {diff}: {got}"
        print(f"  {endpoint.name}: same logits as its packaged file (max |diff| {diff:.1e})")
    print(flush=True)


def report(results: dict[tuple[str, int], Result], duration: float) -> None:
    """Each server against Flask at each concurrency, and the targets."""
    header = (
        f"{'conns':>5}  {'server':<8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
        f"{'req/s x flask':>15}{'p99 x flask':>13}"
    )
    print(header)
    print("-" * len(header))
    for connections in CONNECTIONS:
        flask = results["flask", connections]
        for name in SERVERS:
            row = results[name, connections]
            print(
                f"{connections:>5}  {name:<8}{row.requests_per_s:>9.0f}{row.p50_ms:>9.2f}"
                f"{row.p99_ms:>9.2f}{row.errors:>8}"
                f"{row.requests_per_s / flask.requests_per_s:>15.2f}"
                f"{row.p99_ms / flask.p99_ms:>13.2f}"
            )
    print()
    print(
        f"wrk: 1 thread, {duration:g}s per run, latencies from its histogram; "
        "x flask: this server / Flask at the same connections (req/s: higher is better; "
        "p99: lower is better)"
    )
    top = max(CONNECTIONS)
    triton_top, flask_top = results["triton", top], results["flask", top]
    speedup = triton_top.requests_per_s / flask_top.requests_per_s
    p99 = triton_top.p99_ms / flask_top.p99_ms
    clean = all(r.errors == 0 for r in results.values())
    met = speedup >= TARGET_SPEEDUP and p99 <= 1.0 and clean
    print(
        f"target: Triton >= {TARGET_SPEEDUP:g}x Flask's req/s at {top} connections, p99 no worse: "
        f"{speedup:.2f}x, p99 {p99:.2f}x Flask's{'' if clean else ', with errors'} -> "
        f"{'MET' if met else 'MISSED'}"
    )
    served = [
        results["int8", c].requests_per_s / results["triton", c].requests_per_s for c in CONNECTIONS
    ]
    int8_met = served[-1] >= 1.0 and clean
    print(
        f"target: served int8 >= fp32's req/s at {top} connections: "
        + ", ".join(f"{r:.2f}x at {c}" for r, c in zip(served, CONNECTIONS, strict=True))
        + f" -> {'MET' if int8_met else 'MISSED'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # wrk takes whole seconds only (`-d0.5s` is a usage error)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per server")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument(
        "--queue-delay-us", type=int, default=0, help="Triton's max_queue_delay_microseconds"
    )
    parser.add_argument("--serve", choices=["flask", "fastapi"], help=argparse.SUPPRESS)
    parser.add_argument("--model-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve = serve_flask if args.serve == "flask" else serve_fastapi
        serve(args.model_file, args.port)
        return

    began = time.monotonic()
    wrk = ensure_wrk()
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit(f"needs 2 CPUs (server, load generator); this process may use {cpus}")
    server_cpu, load_cpu = cpus[0], cpus[1]

    from conch_runtime.repository import ServingOptions
    from conch_runtime.triton import TritonServer

    trained = time.monotonic()
    model, test_x, accuracy, calibration = train(args.epochs)
    print(
        f"digits MLP 64-{HIDDEN}-{HIDDEN}-10: {args.epochs} epochs, held-out accuracy "
        f"{accuracy:.4f}, trained in {time.monotonic() - trained:.1f}s",
        flush=True,
    )
    serving = ServingOptions(instances=1, max_queue_delay_us=args.queue_delay_us, torch_threads=1)
    with tempfile.TemporaryDirectory(prefix="conch-bench-serving-") as scratch:
        workdir = Path(scratch)
        result, int8, model_file, reference, int8_reference = package_both(
            model, test_x, calibration, serving, workdir
        )
        pixels = test_x[:1].tolist()
        v2 = {
            "inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": pixels[0]}]
        }
        print(
            f"packaged ({model_file.name}, python backend, 1 instance, 1 torch thread, dynamic "
            f"batching: max batch {result.signature.max_batch_size}, max queue delay "
            f"{args.queue_delay_us} us); servers on CPU {server_cpu}, wrk on CPU {load_cpu}",
            flush=True,
        )

        pids: dict[str, int] = {}
        triton = TritonServer([result.repository, int8.repository])
        try:
            with pinned(server_cpu):
                triton.start()
                assert triton.process is not None
                pids["triton"] = triton.process.pid
                endpoints = [
                    Endpoint(
                        "triton",
                        f"http://{triton.http_url}/v2/models/{NAME}/infer",
                        json.dumps(v2).encode(),
                        lambda r: r["outputs"][0]["data"],
                    ),
                    Endpoint(
                        "int8",
                        f"http://{triton.http_url}/v2/models/{NAME}-int8/infer",
                        json.dumps(v2).encode(),
                        lambda r: r["outputs"][0]["data"],
                    ),
                ]
                for kind in ("flask", "fastapi"):
                    pids[kind], port = start_python_server(kind, model_file, workdir)
                    endpoints.append(
                        Endpoint(
                            kind,
                            f"http://{HOST}:{port}/predict",
                            json.dumps({"pixels": pixels}).encode(),
                            lambda r: r["logits"][0],
                        )
                    )
            threads = {name: check_pinned(pid, server_cpu) for name, pid in pids.items()}
            print(
                "servers up, every thread on CPU "
                f"{server_cpu}: {', '.join(f'{n} {t} threads' for n, t in threads.items())}"
            )
            check_logits(endpoints, reference, int8_reference)

            os.sched_setaffinity(0, {load_cpu})  # this process only waits for wrk from now on
            results = load(wrk, endpoints, workdir, args, load_cpu)
        finally:
            stop_servers(triton, pids)

    report(results, args.duration)
    print(f"whole run: {time.monotonic() - began:.0f}s", flush=True)


if __name__ == "__main__":
    main()
    # Everything this run started is stopped and checked gone, its files removed and the
    # output flushed: skip the interpreter's teardown, which for torch's CUDA build (its
    # libraries' static destructors) measured 3-8 s here after a backward pass, longer
    # on a loaded machine, with nothing left to do.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
