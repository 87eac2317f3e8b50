"""`package`: a trained model in, a servable, verifiable, applyable package out.

    load -> signature -> run the original -> compress -> export -> repository + config.pbtxt
         -> run the packaged file (the reference for `validate`) -> artifact -> manifest
         -> ModelVersion YAML

The package directory::

    OUT/conch.json                      manifest: digests, artifact, compression report
    OUT/modelversion.yaml               kubectl apply -f
    OUT/MODEL-VERSION.tar.gz            the artifact: the repository below, for `pull`
    OUT/repository/MODEL/config.pbtxt
    OUT/repository/MODEL/1/...          model.py + model.pt2 | model.pt | model.onnx
    OUT/validation/inputs.npz           validation inputs (and labels, when given)
    OUT/validation/expected.npz         outputs of the packaged model file, run by torch/ORT
    OUT/validation/original.npz         outputs of the original, uncompressed model

Everything is written to a staging directory beside OUT and renamed onto it at the end, so
a failed run leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from conch_runtime.compress import (
    INT8_QUANTIZER,
    CompressionOptions,
    HalfPrecision,
    accuracy,
    agreement,
    distill,
    prune,
    quantize_int8,
    run_model,
)
from conch_runtime.data import Batch, Dataset, generate_inputs, save_npz
from conch_runtime.export import FORMATS, Format, SavedModel, export_model, load_saved
from conch_runtime.latency import measure
from conch_runtime.manifest import Manifest, file_digests, write_artifact
from conch_runtime.models import LoadedModel, load_model
from conch_runtime.modelversion import MODELVERSION, build_modelversion, check_identity, dump_yaml
from conch_runtime.progress import Reporter, SilentReporter
from conch_runtime.report import (
    AccuracyMetric,
    CompressionReport,
    Distillation,
    Latency,
    OutputError,
    Transform,
    compression_warnings,
)
from conch_runtime.repository import (
    MODEL_VERSION,
    ServingOptions,
    build_config,
    config_signature,
    read_config,
    write_config,
    write_python_model,
)
from conch_runtime.signature import DEFAULT_MAX_BATCH_SIZE, Signature, as_outputs, infer_signature
from conch_runtime.tool_errors import (
    ExportFailed,
    InvalidData,
    InvalidModel,
    InvalidRepository,
    InvalidSignature,
)

__all__ = ["CompressionReport", "PackageRequest", "PackageResult", "package"]

REPOSITORY = "repository"
VALIDATION = "validation"


@dataclass(frozen=True)
class PackageResult:
    directory: Path
    repository: Path
    """The model repository root (holds MODEL/config.pbtxt): what the artifact unpacks to."""
    artifact: Path
    sha256: str
    size_bytes: int
    uri: str
    signature: Signature
    manifest: Path
    modelversion: Path
    compression: CompressionReport


@dataclass(frozen=True)
class PackageRequest:
    """What to package and how, besides the model and the output directory.

    The signature is `signature`, or inferred from `example` (input name -> batched tensor,
    in forward's order) with `output_names`. Validation inputs are `validation` (with
    optional `labels` for accuracy), or `validation_samples` generated ones. `uri` is where
    the artifact will be served from (default: its file:// path).
    """

    name: str
    version: str
    format: Format = "python"
    weights: Path | None = None
    """State dict for a module:factory (or an nn.Module)."""
    signature: Signature | None = None
    example: Mapping[str, Any] | Dataset | None = None
    output_names: Sequence[str] | None = None
    dynamic_axes: Mapping[str, Sequence[int]] | None = None
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    compression: CompressionOptions | None = None
    validation: Mapping[str, Any] | Dataset | None = None
    validation_samples: int = 64
    serving: ServingOptions | None = None
    uri: str | None = None
    baseline_version: str | None = None
    search_path: Sequence[Path] = ()
    seed: int = 0


def package(
    model: str | Path | nn.Module,
    out: Path,
    request: PackageRequest,
    reporter: Reporter | None = None,
) -> PackageResult:
    """Package `model` (a .pt2, a TorchScript file, a module:factory or an nn.Module) into
    the new directory `out`, as `request` says. See the module docstring for what is
    written."""
    reporter = reporter or SilentReporter()
    compression = request.compression or CompressionOptions()
    name, version, format = request.name, request.version, request.format
    check_identity(name, version)
    if format not in FORMATS:
        raise ExportFailed(f"unknown format {format!r}; use one of {', '.join(FORMATS)}")
    out = Path(os.path.abspath(out))
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InvalidRepository(f"{out} exists and is not empty; package into a new directory")
    artifact_name = f"{name}-{version}.tar.gz"

    with reporter.step(f"Loading {model if not isinstance(model, nn.Module) else 'the model'}"):
        loaded = load_model(model, weights=request.weights, search_path=request.search_path)
    serving = request.serving or ServingOptions()
    compression.check(loaded, format, serving.device)
    with reporter.step("Working out the signature"):
        signature, data, export_batch = _interface(loaded, request)

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.conch-package-", dir=out.parent))
    try:
        job = _Job(
            loaded=loaded,
            name=name,
            version=version,
            format=format,
            signature=signature,
            data=data,
            export_batch=export_batch,
            options=compression,
            serving=serving,
            uri=request.uri or (out / artifact_name).as_uri(),
            artifact_name=artifact_name,
            baseline_version=request.baseline_version,
        )
        result = _build(job, staging, out, reporter)
        if out.exists():
            out.rmdir()
        os.rename(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result


def _interface(loaded: LoadedModel, request: PackageRequest) -> tuple[Signature, Dataset, Batch]:
    """The signature, the validation data in its order, and a batch of >= 2 samples to
    export with."""
    seed = request.seed
    sample = None if request.example is None else _dataset(request.example, "example")
    signature = _signature(loaded, request, sample)
    if sample is None:
        sample = generate_inputs(signature, 8, seed=seed)
    sample = sample.ordered(signature)
    data = (
        generate_inputs(signature, request.validation_samples, seed=seed + 1, like=sample)
        if request.validation is None
        else _dataset(request.validation, "validation").ordered(signature)
    )
    export_batch = (sample if len(sample) >= 2 else data).head(8).inputs
    if len(next(iter(export_batch.values()))) < 2:
        raise InvalidData("export needs an example or validation batch of at least 2 samples")
    return signature, data, export_batch


def _dataset(value: Mapping[str, Any] | Dataset, what: str) -> Dataset:
    if isinstance(value, Dataset):
        return value
    try:
        return Dataset.of(value)
    except InvalidData as exc:
        raise InvalidData(f"{what}: {exc.message}") from None


def _signature(loaded: LoadedModel, request: PackageRequest, sample: Dataset | None) -> Signature:
    given = request.signature
    if given is None:
        if sample is None:
            raise InvalidSignature("give a signature, or an example input to infer it from")
        try:
            return infer_signature(
                loaded.module,
                sample.inputs,
                output_names=request.output_names,
                max_batch_size=request.max_batch_size,
                dynamic=request.dynamic_axes,
            )
        except InvalidSignature:
            raise
        except Exception as exc:
            raise InvalidModel(
                f"the model fails on the example: {type(exc).__name__}: {exc}"
            ) from None
    probe = (sample or generate_inputs(given, 2)).ordered(given)
    try:
        with torch.no_grad():
            outputs = as_outputs(loaded.module(*probe.inputs.values()))
    except Exception as exc:
        raise InvalidModel(
            f"the model fails on the signature's inputs: {type(exc).__name__}: {exc}"
        ) from None
    if len(outputs) != len(given.outputs):
        raise InvalidSignature(
            f"the model returns {len(outputs)} outputs, the signature names {len(given.outputs)}"
        )
    for spec, tensor in zip(given.outputs, outputs, strict=True):
        if tensor.dtype != spec.dtype or not spec.matches(tuple(tensor.shape[1:])):
            raise InvalidSignature(
                f"output {spec.name!r} is {tensor.dtype} {list(tensor.shape[1:])}, the signature "
                f"says {spec.data_type} {list(spec.dims)}"
            )
    return given


def _write_repository(
    module: nn.Module,
    repository: Path,
    name: str,
    format: Format,
    signature: Signature,
    serving: ServingOptions,
    export_batch: dict[str, torch.Tensor],
) -> Path:
    """Export `module` into REPOSITORY/NAME/1, add model.py and config.pbtxt; the model
    file's path. The config is parsed back with the protobuf and must match."""
    version_dir = repository / name / MODEL_VERSION
    model_path = export_model(module, signature, export_batch, format, version_dir)
    if format == "python":
        write_python_model(version_dir)
    config = build_config(name, format, signature, serving, model_path.name)
    written = read_config(write_config(repository / name, config))
    if written != config or config_signature(written) != signature:
        raise InvalidRepository("config.pbtxt does not read back as written")
    return model_path


def _run_saved(model: SavedModel, data: Dataset, batch: int) -> list[torch.Tensor]:
    parts = [model(*b.values()) for b in data.batches(batch)]
    return [torch.cat(column) for column in zip(*parts, strict=True)]


def _output_errors(
    signature: Signature, reference: Sequence[torch.Tensor], actual: Sequence[torch.Tensor]
) -> dict[str, OutputError]:
    errors = {}
    for spec, want, got in zip(signature.outputs, reference, actual, strict=True):
        diff = (got.double() - want.double()).abs()
        errors[spec.name] = OutputError(float(diff.max()), float(diff.mean()))
    return errors


def _tool_versions() -> dict[str, str]:
    versions = {}
    for dist in ("torch", "onnx", "onnxruntime", "tritonclient", "nvidia-pytriton"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return versions


@dataclass(frozen=True)
class _Job:
    """What `package` settled before building: the model, its signature and data, and the
    options; `_build` and its steps work from this alone."""

    loaded: LoadedModel
    name: str
    version: str
    format: Format
    signature: Signature
    data: Dataset
    export_batch: Batch
    options: CompressionOptions
    serving: ServingOptions
    uri: str
    artifact_name: str
    baseline_version: str | None

    @property
    def batch(self) -> int:
        return max(1, self.signature.max_batch_size)


@dataclass(frozen=True)
class _Baseline:
    """The uncompressed model packaged the same way: its sizes, and its model file loaded
    (for latency), so the report compares like with like."""

    model_bytes: int
    artifact_bytes: int
    model: SavedModel


def _build(job: _Job, staging: Path, out: Path, reporter: Reporter) -> PackageResult:
    original = _run_original(job, reporter)
    baseline = _baseline(job, reporter) if job.options.any else None
    working, transform = _compress(job, reporter)

    repository = staging / REPOSITORY
    with reporter.step(f"Exporting for the {job.format} format, writing the repository"):
        model_path = _write_repository(
            working, repository, job.name, job.format, job.signature, job.serving, job.export_batch
        )
    with reporter.step("Running the packaged model file (the validation reference)"):
        saved = load_saved(model_path)
        expected = _run_saved(saved, job.data, job.batch)
        _write_validation(staging, job, original, expected)
    latency = _latency(job, saved, baseline, reporter)
    with reporter.step("Packing the artifact"):
        sha256, size = write_artifact(repository, staging / job.artifact_name)

    metric, score, baseline_score = _scores(job.data, original, expected)
    report = CompressionReport(
        transform=transform,
        baseline_version=job.baseline_version,
        model_bytes=model_path.stat().st_size,
        artifact_bytes=size,
        baseline_model_bytes=None if baseline is None else baseline.model_bytes,
        baseline_artifact_bytes=None if baseline is None else baseline.artifact_bytes,
        baseline_accuracy=baseline_score,
        accuracy=score,
        accuracy_metric=metric,
        validation_samples=len(job.data),
        output_errors=_output_errors(job.signature, original, expected),
        latency=latency,
    )
    report = replace(report, warnings=compression_warnings(report, job.serving.device))
    _write_records(job, staging, report, model_path.relative_to(repository), sha256, size)
    return PackageResult(
        directory=out,
        repository=out / REPOSITORY,
        artifact=out / job.artifact_name,
        sha256=sha256,
        size_bytes=size,
        uri=job.uri,
        signature=job.signature,
        manifest=out / "conch.json",
        modelversion=out / MODELVERSION,
        compression=report,
    )


def _run_original(job: _Job, reporter: Reporter) -> list[torch.Tensor]:
    loaded, data = job.loaded, job.data
    with reporter.step(f"Running the original model on {len(data)} validation samples"):
        try:
            return run_model(loaded.module, data, job.batch)
        except Exception as exc:
            hint = ""
            if loaded.kind == "exported":
                hint = " (was the program exported with a dynamic batch dimension?)"
            raise InvalidModel(
                f"the model fails on a batch of {min(job.batch, len(data))} validation samples"
                f"{hint}: {type(exc).__name__}: {exc}"
            ) from None


def _baseline(job: _Job, reporter: Reporter) -> _Baseline:
    with (
        reporter.step("Packaging the uncompressed model to measure its size and latency"),
        tempfile.TemporaryDirectory() as scratch,
    ):
        root = Path(scratch) / REPOSITORY
        path = _write_repository(
            job.loaded.module, root, job.name, job.format, job.signature, job.serving,
            job.export_batch,
        )  # fmt: skip
        artifact_bytes = write_artifact(root, Path(scratch) / job.artifact_name)[1]
        return _Baseline(path.stat().st_size, artifact_bytes, load_saved(path))


def _compress(job: _Job, reporter: Reporter) -> tuple[nn.Module, Transform]:
    """Apply the options in their fixed order (distill -> prune -> int8 | fp16)."""
    options, loaded = job.options, job.loaded
    working: nn.Module = loaded.module
    kind = loaded.kind
    transform = Transform()
    if options.distill is not None:
        working = distill(loaded.module, options.distill, reporter)
        kind = "eager"
        transform = replace(
            transform,
            distilled_from=options.distill.teacher_version or Path(loaded.source).name,
            distillation=Distillation(
                epochs=options.distill.epochs,
                temperature=options.distill.temperature,
                alpha=options.distill.alpha,
                samples=len(options.distill.data),
            ),
        )
    elif options.any and kind == "eager":
        working = copy.deepcopy(working)  # the caller's module stays as it was
    if options.sparsity is not None:
        with reporter.step(f"Pruning to {options.sparsity:.0%} sparsity"):
            measured = prune(working, options.sparsity, kind)
        transform = replace(transform, sparsity=measured, target_sparsity=options.sparsity)
    if options.int8:
        calibration = options.calibration or job.data
        with reporter.step(f"Quantizing to int8 (x86, calibrated on {len(calibration)} samples)"):
            working = quantize_int8(working, job.signature, calibration, job.export_batch)
        transform = replace(
            transform,
            quantization="int8-static",
            quantizer=INT8_QUANTIZER,
            calibration_samples=len(calibration),
        )
    if options.fp16:
        working = HalfPrecision(working, [spec.dtype for spec in job.signature.outputs])
        transform = replace(transform, fp16=True)
    return working, transform


def _write_validation(
    staging: Path, job: _Job, original: Sequence[torch.Tensor], expected: Sequence[torch.Tensor]
) -> None:
    names = job.signature.output_names
    save_npz(staging / VALIDATION / "inputs.npz", job.data.to_arrays())
    save_npz(staging / VALIDATION / "expected.npz", dict(zip(names, expected, strict=True)))
    save_npz(staging / VALIDATION / "original.npz", dict(zip(names, original, strict=True)))


def _scores(
    data: Dataset, original: Sequence[torch.Tensor], expected: Sequence[torch.Tensor]
) -> tuple[AccuracyMetric, float, float]:
    """(metric, packaged score, original score): top-1 on the labels, or without labels how
    often the package answers as the original (which then scores 1)."""
    if data.labels is None:
        metric, score = agreement(expected, original)
        return metric, score, 1.0
    return "top1", accuracy(expected, data.labels), accuracy(original, data.labels)


def _latency(
    job: _Job, saved: SavedModel, baseline: _Baseline | None, reporter: Reporter
) -> Latency:
    threads = job.serving.torch_threads
    with reporter.step(f"Timing batch 1 and batch {job.batch} on {threads} thread(s)"):
        models = {"package": saved}
        if baseline is not None:
            models["baseline"] = baseline.model
        times = measure(models, job.data, job.batch, thread_count=threads)
    one, most = times["package"]
    base = times.get("baseline")
    return Latency(
        threads=threads,
        max_batch=job.batch,
        batch1_ms=one,
        max_batch_ms=most,
        baseline_batch1_ms=None if base is None else base[0],
        baseline_max_batch_ms=None if base is None else base[1],
        device="cpu",
    )


def _write_records(
    job: _Job, staging: Path, report: CompressionReport, model_file: Path, sha256: str, size: int
) -> None:
    """modelversion.yaml and conch.json (the manifest, with every file's digest)."""
    modelversion = build_modelversion(
        model=job.name,
        version=job.version,
        format=job.format,
        uri=job.uri,
        sha256=sha256,
        signature=job.signature.to_dict(),
        compression=report.to_crd(),
    )
    dump_yaml(modelversion, staging / MODELVERSION)
    manifest = Manifest(
        model=job.name,
        version=job.version,
        format=job.format,
        model_file=model_file.as_posix(),
        signature=job.signature.to_dict(),
        artifact=job.artifact_name,
        artifact_sha256=sha256,
        artifact_bytes=size,
        compression=report.to_dict(),
        validation={
            "inputs": f"{VALIDATION}/inputs.npz",
            "expected": f"{VALIDATION}/expected.npz",
            "original": f"{VALIDATION}/original.npz",
        },
        tools=_tool_versions(),
    )
    manifest.files = file_digests(staging)
    manifest.write(staging)
