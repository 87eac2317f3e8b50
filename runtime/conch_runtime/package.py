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
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from conch_runtime.compress import (
    AccuracyMetric,
    CompressionOptions,
    HalfPrecision,
    accuracy,
    agreement,
    distill,
    prune,
    quantize_int8,
    run_model,
)
from conch_runtime.data import Dataset, generate_inputs, save_npz
from conch_runtime.export import FORMATS, Format, SavedModel, export_model, load_saved
from conch_runtime.manifest import Manifest, file_digests, write_artifact
from conch_runtime.models import LoadedModel, load_model
from conch_runtime.modelversion import MODELVERSION, build_modelversion, check_identity, dump_yaml
from conch_runtime.progress import Reporter, SilentReporter
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

__all__ = ["PackageResult", "package"]

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
    compression: dict[str, Any]


def package(  # noqa: PLR0913  (to split: issue 12)
    model: str | Path | nn.Module,
    out: Path,
    *,
    name: str,
    version: str,
    format: Format = "python",
    weights: Path | None = None,
    signature: Signature | None = None,
    example: Mapping[str, Any] | Dataset | None = None,
    output_names: Sequence[str] | None = None,
    dynamic_axes: Mapping[str, Sequence[int]] | None = None,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    compression: CompressionOptions | None = None,
    validation: Mapping[str, Any] | Dataset | None = None,
    validation_samples: int = 64,
    serving: ServingOptions | None = None,
    uri: str | None = None,
    baseline_version: str | None = None,
    search_path: Sequence[Path] = (),
    seed: int = 0,
    reporter: Reporter | None = None,
) -> PackageResult:
    """Package `model` (a .pt2, a TorchScript file, a module:factory or an nn.Module) into
    the new directory `out`. See the module docstring for what is written.

    The signature is `signature`, or inferred from `example` (input name -> batched tensor,
    in forward's order) with `output_names`. Validation inputs are `validation` (with
    optional `labels` for accuracy), or `validation_samples` generated ones. `uri` is where
    the artifact will be served from (default: its file:// path).
    """
    reporter = reporter or SilentReporter()
    compression = compression or CompressionOptions()
    serving = serving or ServingOptions()
    check_identity(name, version)
    if format not in FORMATS:
        raise ExportFailed(f"unknown format {format!r}; use one of {', '.join(FORMATS)}")
    out = Path(os.path.abspath(out))
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InvalidRepository(f"{out} exists and is not empty; package into a new directory")
    artifact_name = f"{name}-{version}.tar.gz"
    uri = uri or (out / artifact_name).as_uri()

    with reporter.step(f"Loading {model if not isinstance(model, nn.Module) else 'the model'}"):
        loaded = load_model(model, weights=weights, search_path=search_path)
    compression.check(loaded, format)

    with reporter.step("Working out the signature"):
        sample = None if example is None else _dataset(example, "example")
        signature = _signature(
            loaded, signature, sample, output_names, dynamic_axes, max_batch_size
        )
        if sample is None:
            sample = generate_inputs(signature, 8, seed=seed)
        sample = sample.ordered(signature)
        data = (
            generate_inputs(signature, validation_samples, seed=seed + 1, like=sample)
            if validation is None
            else _dataset(validation, "validation").ordered(signature)
        )
        export_batch = (sample if len(sample) >= 2 else data).head(8).inputs
        if len(next(iter(export_batch.values()))) < 2:
            raise InvalidData("export needs an example or validation batch of at least 2 samples")

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.conch-package-", dir=out.parent))
    try:
        result = _build(
            loaded, staging, out, name, version, format, signature, data, export_batch,
            compression, serving, uri, artifact_name, baseline_version, reporter,
        )  # fmt: skip
        if out.exists():
            out.rmdir()
        os.rename(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result


def _dataset(value: Mapping[str, Any] | Dataset, what: str) -> Dataset:
    if isinstance(value, Dataset):
        return value
    try:
        return Dataset.of(value)
    except InvalidData as exc:
        raise InvalidData(f"{what}: {exc.message}") from None


def _signature(
    loaded: LoadedModel,
    given: Signature | None,
    sample: Dataset | None,
    output_names: Sequence[str] | None,
    dynamic_axes: Mapping[str, Sequence[int]] | None,
    max_batch_size: int,
) -> Signature:
    if given is None:
        if sample is None:
            raise InvalidSignature("give a signature, or an example input to infer it from")
        try:
            return infer_signature(
                loaded.module,
                sample.inputs,
                output_names=output_names,
                max_batch_size=max_batch_size,
                dynamic=dynamic_axes,
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
) -> dict[str, dict[str, float]]:
    errors = {}
    for spec, want, got in zip(signature.outputs, reference, actual, strict=True):
        diff = (got.double() - want.double()).abs()
        errors[spec.name] = {
            "maxAbsError": float(diff.max()),
            "meanAbsError": float(diff.mean()),
        }
    return errors


def _tool_versions() -> dict[str, str]:
    versions = {}
    for dist in ("torch", "torchao", "onnx", "onnxruntime", "tritonclient", "nvidia-pytriton"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return versions


def _build(  # noqa: PLR0913, PLR0915  (to split: issue 12)
    loaded: LoadedModel,
    staging: Path,
    out: Path,
    name: str,
    version: str,
    format: Format,
    signature: Signature,
    data: Dataset,
    export_batch: dict[str, torch.Tensor],
    options: CompressionOptions,
    serving: ServingOptions,
    uri: str,
    artifact_name: str,
    baseline_version: str | None,
    reporter: Reporter,
) -> PackageResult:
    batch = signature.max_batch_size
    with reporter.step(f"Running the original model on {len(data)} validation samples"):
        try:
            original = run_model(loaded.module, data, batch)
        except Exception as exc:
            hint = ""
            if loaded.kind == "exported":
                hint = " (was the program exported with a dynamic batch dimension?)"
            raise InvalidModel(
                f"the model fails on a batch of {min(batch, len(data))} validation samples"
                f"{hint}: {type(exc).__name__}: {exc}"
            ) from None
        baseline_accuracy = 1.0 if data.labels is None else accuracy(original, data.labels)

    baseline_bytes = baseline_artifact = None
    if options.any:
        with (
            reporter.step("Packaging the uncompressed model to measure its size"),
            tempfile.TemporaryDirectory() as scratch,
        ):
            root = Path(scratch) / REPOSITORY
            path = _write_repository(
                loaded.module, root, name, format, signature, serving, export_batch
            )
            baseline_bytes = path.stat().st_size
            baseline_artifact = write_artifact(root, Path(scratch) / artifact_name)[1]

    report: dict[str, Any] = {"quantization": "none"}
    working: nn.Module = loaded.module
    kind = loaded.kind
    if options.distill is not None:
        working = distill(loaded.module, options.distill, reporter)
        kind = "eager"
        report["distilledFrom"] = options.distill.teacher_version or Path(loaded.source).name
        report["distillation"] = {
            "epochs": options.distill.epochs,
            "temperature": options.distill.temperature,
            "alpha": options.distill.alpha,
            "samples": len(options.distill.data),
        }
    elif options.any and kind == "eager":
        working = copy.deepcopy(working)  # the caller's module stays as it was
    if options.sparsity is not None:
        with reporter.step(f"Pruning to {options.sparsity:.0%} sparsity"):
            report["sparsity"] = round(prune(working, options.sparsity, kind), 6)
            report["targetSparsity"] = options.sparsity
    if options.int8:
        report["quantization"] = "int8-dynamic"
        with reporter.step("Quantizing Linear layers to int8 (torchao, dynamic)"):
            working = quantize_int8(working)
        report["quantizer"] = "torchao Int8DynamicActivationInt8WeightConfig"
    if options.fp16:
        working = HalfPrecision(working, [spec.dtype for spec in signature.outputs])
        report["fp16"] = True

    repository = staging / REPOSITORY
    with reporter.step(f"Exporting for the {format} format, writing the repository"):
        model_path = _write_repository(
            working, repository, name, format, signature, serving, export_batch
        )

    with reporter.step("Running the packaged model file (the validation reference)"):
        expected = _run_saved(load_saved(model_path), data, batch)
        metric: AccuracyMetric = "top1"
        if data.labels is None:  # no labels: how often the package answers as the original
            metric, compressed_accuracy = agreement(expected, original)
        else:
            compressed_accuracy = accuracy(expected, data.labels)
        inputs_file = staging / VALIDATION / "inputs.npz"
        save_npz(inputs_file, data.to_arrays())
        save_npz(
            staging / VALIDATION / "expected.npz",
            dict(zip(signature.output_names, expected, strict=True)),
        )
        save_npz(
            staging / VALIDATION / "original.npz",
            dict(zip(signature.output_names, original, strict=True)),
        )

    with reporter.step("Packing the artifact"):
        sha256, size = write_artifact(repository, staging / artifact_name)

    model_bytes = model_path.stat().st_size
    report.update(
        {
            "baselineVersion": baseline_version,
            "modelBytes": model_bytes,
            "baselineModelBytes": baseline_bytes,
            "sizeRatio": None if baseline_bytes is None else round(baseline_bytes / model_bytes, 4),
            "artifactBytes": size,
            "baselineArtifactBytes": baseline_artifact,
            "artifactSizeRatio": None
            if baseline_artifact is None
            else round(baseline_artifact / size, 4),
            "baselineAccuracy": baseline_accuracy,
            "accuracy": compressed_accuracy,
            "accuracyMetric": metric,
            "accuracyDelta": compressed_accuracy - baseline_accuracy,
            "validationSamples": len(data),
            "outputErrors": _output_errors(signature, original, expected),
        }
    )
    report = {k: v for k, v in report.items() if v is not None}

    modelversion = build_modelversion(
        model=name,
        version=version,
        format=format,
        uri=uri,
        sha256=sha256,
        signature=signature.to_dict(),
        compression=_crd_compression(report),
    )
    dump_yaml(modelversion, staging / MODELVERSION)
    manifest = Manifest(
        model=name,
        version=version,
        format=format,
        model_file=model_path.relative_to(repository).as_posix(),
        signature=signature.to_dict(),
        artifact=artifact_name,
        artifact_sha256=sha256,
        artifact_bytes=size,
        compression=report,
        validation={
            "inputs": f"{VALIDATION}/inputs.npz",
            "expected": f"{VALIDATION}/expected.npz",
            "original": f"{VALIDATION}/original.npz",
        },
        tools=_tool_versions(),
    )
    manifest.files = file_digests(staging)
    manifest.write(staging)
    return PackageResult(
        directory=out,
        repository=out / REPOSITORY,
        artifact=out / artifact_name,
        sha256=sha256,
        size_bytes=size,
        uri=uri,
        signature=signature,
        manifest=out / "conch.json",
        modelversion=out / MODELVERSION,
        compression=report,
    )


_CRD_FIELDS = (
    "quantization",
    "sparsity",
    "fp16",
    "distilledFrom",
    "baselineVersion",
    "baselineAccuracy",
    "accuracy",
    "accuracyMetric",
)


def _crd_compression(report: Mapping[str, Any]) -> dict[str, Any]:
    """The report's fields that ModelVersion.spec.compression has, plus the artifact size."""
    block = {k: report[k] for k in _CRD_FIELDS if k in report}
    for key in ("baselineAccuracy", "accuracy", "sparsity"):
        if key in block:
            block[key] = float(np.clip(round(float(block[key]), 6), 0.0, 1.0))
    block["sizeBytes"] = int(report["artifactBytes"])
    return block
