"""Check a package end to end: digests, config, and the numbers a real server returns.

1. every file's sha256 against `conch.json` (a changed byte fails here, before anything
   runs);
2. `config.pbtxt` parsed with Triton's model-config protobuf, and its signature against the
   manifest's;
3. the validation inputs run through the model, once at each of the batch sizes 1, 3, 7,
   15, ... (2^k - 1) up to maxBatchSize and at maxBatchSize (a model whose answers depend on
   the batch shows there): for the ``python`` format on a real `tritonserver` (Python
   backend, loopback) through tritonclient; for ``torchscript`` and ``onnx``, whose backends
   (libtorch, onnxruntime) the nvidia-pytriton wheel lacks, with torch / onnxruntime
   directly, which the report says in `engine` and `notes`;
4. the outputs at every batch size compared with the reference (the packaged model as run
   by torch at package time, or a reference model given here) within
   `atol + rtol * |reference|`; integer and boolean outputs must match exactly. Each
   output reports its worst error over the batch sizes, and the batch size it was at.

A mismatch is a result (`passed=False`), not an exception. Latency is measured with
single-sample requests after the comparison.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from conch_runtime.compress import run_model
from conch_runtime.data import Dataset, load_npz
from conch_runtime.export import load_saved
from conch_runtime.manifest import Manifest, verify_files
from conch_runtime.progress import Reporter, SilentReporter
from conch_runtime.repository import CONFIG, config_signature, read_config
from conch_runtime.signature import Signature, numpy_dtype
from conch_runtime.tool_errors import InvalidRepository, ServerError
from conch_runtime.triton import TritonServer

__all__ = ["OutputCheck", "ValidationReport", "batch_sizes", "default_tolerance", "validate"]

REPOSITORY = "repository"


@dataclass(frozen=True)
class OutputCheck:
    name: str
    max_abs_error: float
    mean_abs_error: float
    passed: bool
    max_abs_error_vs_original: float | None = None
    """Compression error: the served output against the uncompressed original model."""
    worst_batch_size: int | None = None
    """The batch size at which max_abs_error was found."""


@dataclass(frozen=True)
class ValidationReport:
    package: str
    model: str
    format: str
    engine: str
    passed: bool
    atol: float
    rtol: float
    samples: int = 0
    batch_sizes: tuple[int, ...] = ()
    max_abs_error: float = float("nan")
    outputs: tuple[OutputCheck, ...] = ()
    latency_ms_p50: float | None = None
    latency_ms_p99: float | None = None
    server_startup_seconds: float | None = None
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_tolerance(manifest: Manifest) -> tuple[float, float]:
    """(atol, rtol): tight for fp32 and int8 (the server runs the same program as the
    reference), looser for fp16, whose rounding depends on batch composition."""
    if manifest.compression.get("fp16"):
        return 1e-2, 1e-2
    return 1e-4, 1e-4


Runner = Callable[[Dataset, Signature], list[np.ndarray[Any, Any]]]
Outputs = list[np.ndarray[Any, Any]]


def batch_sizes(max_batch_size: int) -> tuple[int, ...]:
    """1, 3, 7, 15, ... (2^k - 1) below `max_batch_size`, and `max_batch_size`: odd sizes
    that no preferred batch size or padding lines up with, across the whole range."""
    sizes, size = {max_batch_size}, 1
    while size < max_batch_size:
        sizes.add(size)
        size = 2 * size + 1
    return tuple(sorted(sizes))


def validate(
    package: Path,
    *,
    server: TritonServer | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    reference: torch.nn.Module | None = None,
    latency_requests: int = 20,
    reporter: Reporter | None = None,
) -> ValidationReport:
    """Validate the package directory `package` (written by `package`); see the module doc.

    `server`: an already running TritonServer whose repositories include this package's
    `repository/` (started with explicit=True, the model is loaded here); without it one is
    started for this call and stopped by pid after it.
    `reference`: compare with this model's outputs instead of the recorded ones.
    """
    reporter = reporter or SilentReporter()
    package = package.resolve()
    manifest = Manifest.read(package)
    default_atol, default_rtol = default_tolerance(manifest)
    atol = default_atol if atol is None else atol
    rtol = default_rtol if rtol is None else rtol
    where = str(package)

    with reporter.step("Checking file digests against conch.json"):
        problems = verify_files(package, manifest.files)
        config_path = package / REPOSITORY / manifest.model / CONFIG
        signature = Signature.from_dict(manifest.signature)
        if not problems:
            served = config_signature(read_config(config_path))
            if served != signature:
                problems.append(f"{config_path}: signature differs from the manifest's")
    if problems:
        return ValidationReport(
            where,
            manifest.model,
            manifest.format,
            engine="none",
            passed=False,
            atol=atol,
            rtol=rtol,
            problems=tuple(problems),
        )

    data = load_npz(package / manifest.validation["inputs"]).ordered(signature)
    if reference is not None:
        expected = [t.numpy() for t in run_model(reference, data)]
    else:
        expected = _arrays(package / manifest.validation["expected"], signature.output_names)
    original = None
    if "original" in manifest.validation:
        original = _arrays(package / manifest.validation["original"], signature.output_names)

    sizes = batch_sizes(min(signature.max_batch_size, len(data)))
    if manifest.format == "python":
        ran = _on_triton(
            package, manifest, data, signature, sizes, latency_requests, server, reporter
        )
    else:
        ran = _locally(package, manifest, data, signature, sizes, latency_requests, reporter)

    checks = tuple(
        _worst(
            [
                _compare(
                    spec_name,
                    ran.runs[size][i],
                    want,
                    None if original is None else original[i],
                    atol,
                    rtol,
                    size,
                )
                for size in sizes
            ]
        )
        for i, (spec_name, want) in enumerate(zip(signature.output_names, expected, strict=True))
    )
    ordered = sorted(ran.latencies)
    return ValidationReport(
        where,
        manifest.model,
        manifest.format,
        engine=ran.engine,
        passed=all(c.passed for c in checks),
        atol=atol,
        rtol=rtol,
        samples=len(data),
        batch_sizes=sizes,
        max_abs_error=max(c.max_abs_error for c in checks),
        outputs=checks,
        latency_ms_p50=statistics.median(ordered) * 1e3 if ordered else None,
        latency_ms_p99=ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1e3
        if ordered
        else None,
        server_startup_seconds=ran.startup,
        notes=ran.notes,
    )


@dataclass(frozen=True)
class _Ran:
    """What one engine did with the validation inputs."""

    engine: str
    runs: dict[int, Outputs]
    """Every output at each batch size."""
    latencies: list[float]
    startup: float | None = None
    notes: tuple[str, ...] = ()


def _on_triton(
    package: Path,
    manifest: Manifest,
    data: Dataset,
    signature: Signature,
    sizes: tuple[int, ...],
    latency_requests: int,
    server: TritonServer | None,
    reporter: Reporter,
) -> _Ran:
    """The python format on a real tritonserver (the caller's, or one of its own)."""
    with reporter.step("Serving the repository on tritonserver (127.0.0.1)"):
        own = server is None
        triton = server or TritonServer([package / REPOSITORY])
        try:
            triton.start()
            runs, latencies = _run_triton(
                triton, manifest.model, data, signature, sizes, latency_requests
            )
            return _Ran(
                "tritonserver (Python backend, nvidia-pytriton wheel)",
                runs,
                latencies,
                startup=triton.startup_seconds if own else None,
            )
        finally:
            if own:
                triton.stop()


def _locally(
    package: Path,
    manifest: Manifest,
    data: Dataset,
    signature: Signature,
    sizes: tuple[int, ...],
    latency_requests: int,
    reporter: Reporter,
) -> _Ran:
    """ONNX and TorchScript on their own runtimes: the wheel's Triton has no such backend."""
    runtime = "onnxruntime" if manifest.format == "onnx" else "torch (TorchScript)"
    notes = [
        f"the nvidia-pytriton wheel has no {manifest.format} backend; numerics checked with "
        f"{runtime} on the packaged file, config.pbtxt with the model-config protobuf"
    ]
    if manifest.format == "torchscript":
        unconventional = [
            name for i, name in enumerate(signature.output_names) if not name.endswith(f"__{i}")
        ]
        if unconventional:
            notes.append(
                "pytorch_libtorch matches outputs by the <name>__<index> convention; "
                f"not following it: {', '.join(unconventional)}"
            )
    with reporter.step(f"Running the packaged model with {runtime}"):
        model = load_saved(package / REPOSITORY / manifest.model_file)

        def run(batch: dict[str, torch.Tensor]) -> Outputs:
            return [t.numpy() for t in model(*batch.values())]

        runs = {size: _run_batched(run, data, size) for size in sizes}
        latencies = _time_local(model, data, latency_requests)
    return _Ran(f"{runtime}, without Triton", runs, latencies, notes=tuple(notes))


def _arrays(path: Path, names: Sequence[str]) -> list[np.ndarray[Any, Any]]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return [archive[name] for name in names]
    except (OSError, KeyError, ValueError) as exc:
        raise InvalidRepository(f"{path}: cannot read outputs {list(names)}: {exc}") from None


def _run_batched(
    run: Callable[[dict[str, torch.Tensor]], Outputs], data: Dataset, size: int
) -> Outputs:
    """Every output over `data`, run in batches of `size`, concatenated on dim 0."""
    parts = [run(batch) for batch in data.batches(size)]
    return [np.concatenate(column) for column in zip(*parts, strict=True)]


def _worst(checks: Sequence[OutputCheck]) -> OutputCheck:
    """One output's checks at ascending batch sizes as one: the largest errors, passed only
    when every batch size passed. The error against the original is the largest size's,
    the batching the original ran with, so it shows compression and not batch rounding."""
    worst = max(checks, key=lambda c: (not c.passed, c.max_abs_error))
    return OutputCheck(
        worst.name,
        worst.max_abs_error,
        max(c.mean_abs_error for c in checks),
        all(c.passed for c in checks),
        checks[-1].max_abs_error_vs_original,
        worst.worst_batch_size,
    )


def _compare(
    name: str,
    actual: np.ndarray[Any, Any],
    expected: np.ndarray[Any, Any],
    original: np.ndarray[Any, Any] | None,
    atol: float,
    rtol: float,
    batch_size: int | None = None,
) -> OutputCheck:
    if actual.shape != expected.shape:
        return OutputCheck(name, float("inf"), float("inf"), False, None, batch_size)
    got, want = actual.astype(np.float64), expected.astype(np.float64)
    error = np.abs(got - want)
    if np.issubdtype(expected.dtype, np.floating):
        passed = bool(np.all(error <= atol + rtol * np.abs(want)))
    else:
        passed = bool(np.array_equal(actual, expected))
    vs_original = None
    if original is not None and original.shape == actual.shape:
        vs_original = float(np.max(np.abs(got - original.astype(np.float64))))
    return OutputCheck(
        name, float(error.max()), float(error.mean()), passed, vs_original, batch_size
    )


def _run_triton(
    server: TritonServer,
    model: str,
    data: Dataset,
    signature: Signature,
    sizes: Sequence[int],
    latency_requests: int,
) -> tuple[dict[int, Outputs], list[float]]:
    """The outputs over `data` at each batch size, and single-sample latencies."""
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    client = http.InferenceServerClient(server.http_url, network_timeout=120.0)
    try:
        if server.explicit:
            server.load(model)
        if not client.is_model_ready(model):
            raise ServerError(f"model {model!r} is not ready:\n{server.log_tail()}")

        def infer(batch: dict[str, torch.Tensor]) -> list[np.ndarray[Any, Any]]:
            inputs = []
            for spec in signature.inputs:
                array = np.ascontiguousarray(
                    batch[spec.name].numpy(), dtype=numpy_dtype(spec.data_type)
                )
                tensor = http.InferInput(spec.name, list(array.shape), spec.data_type[5:])
                tensor.set_data_from_numpy(array, binary_data=True)
                inputs.append(tensor)
            outputs = [
                http.InferRequestedOutput(n, binary_data=True) for n in signature.output_names
            ]
            result = client.infer(model, inputs, outputs=outputs)
            return [np.asarray(result.as_numpy(n)) for n in signature.output_names]

        try:
            runs = {size: _run_batched(infer, data, size) for size in sizes}
            latencies = []
            for i in range(min(latency_requests, len(data))):
                began = time.perf_counter()
                infer({n: t[i : i + 1] for n, t in data.inputs.items()})
                latencies.append(time.perf_counter() - began)
        except InferenceServerException as exc:
            raise ServerError(
                f"inference on {model!r} failed: {exc}\n{server.log_tail()}"
            ) from None
    finally:
        client.close()
    return runs, latencies


def _time_local(model: Callable[..., list[torch.Tensor]], data: Dataset, n: int) -> list[float]:
    latencies = []
    for i in range(min(n, len(data))):
        sample = [t[i : i + 1] for t in data.inputs.values()]
        began = time.perf_counter()
        model(*sample)
        latencies.append(time.perf_counter() - began)
    return latencies
