"""What `package` did to a model and what it measured: the compression report.

One typed record, written to `conch.json` (`to_dict`, camelCase) and, in part, to the
ModelVersion's `spec.compression` (`to_crd`, the fields the CRD has), where the rollout's
accuracy gate and the catalog read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "AccuracyMetric",
    "CompressionReport",
    "Distillation",
    "Latency",
    "OutputError",
    "Quantization",
    "Transform",
    "compression_warnings",
]

Quantization = Literal["int8-static", "none"]
AccuracyMetric = Literal["top1", "top1-agreement-with-baseline", "outputs-agreement-with-baseline"]
"""What accuracy measures: top-1 against the labels; without labels, agreement with the
uncompressed model (whose own score, baselineAccuracy, is then 1)."""


@dataclass(frozen=True)
class Distillation:
    epochs: int
    temperature: float
    alpha: float
    samples: int


@dataclass(frozen=True)
class OutputError:
    """One output of the packaged model against the original's, over the validation data."""

    max_abs_error: float
    mean_abs_error: float


@dataclass(frozen=True)
class Latency:
    """Median milliseconds of the packaged model file (and the uncompressed baseline, timed
    alternately in the same process) at batch 1 and at max batch, on `threads` threads."""

    threads: int
    max_batch: int
    batch1_ms: float
    max_batch_ms: float
    baseline_batch1_ms: float | None = None
    baseline_max_batch_ms: float | None = None
    device: Literal["cpu", "gpu"] = "cpu"

    def speedup(self) -> tuple[float, float] | None:
        """(batch 1, max batch): baseline time / this time; None without a baseline."""
        if self.baseline_batch1_ms is None or self.baseline_max_batch_ms is None:
            return None
        return (
            self.baseline_batch1_ms / self.batch1_ms,
            self.baseline_max_batch_ms / self.max_batch_ms,
        )

    def to_dict(self) -> dict[str, Any]:
        block: dict[str, Any] = {
            "device": self.device,
            "threads": self.threads,
            "batch1Ms": round(self.batch1_ms, 4),
            "maxBatch": self.max_batch,
            "maxBatchMs": round(self.max_batch_ms, 4),
        }
        if self.baseline_batch1_ms is not None and self.baseline_max_batch_ms is not None:
            block["baselineBatch1Ms"] = round(self.baseline_batch1_ms, 4)
            block["baselineMaxBatchMs"] = round(self.baseline_max_batch_ms, 4)
        return block


@dataclass(frozen=True)
class Transform:
    """What was done to the weights, in the order it was done."""

    quantization: Quantization = "none"
    quantizer: str | None = None
    calibration_samples: int | None = None
    sparsity: float | None = None
    """Measured share of zero weights after pruning."""
    target_sparsity: float | None = None
    fp16: bool = False
    distilled_from: str | None = None
    distillation: Distillation | None = None


@dataclass(frozen=True)
class CompressionReport:
    transform: Transform
    baseline_version: str | None
    model_bytes: int
    artifact_bytes: int
    baseline_model_bytes: int | None
    """The uncompressed model packaged the same way (None when nothing was compressed)."""
    baseline_artifact_bytes: int | None
    baseline_accuracy: float
    accuracy: float
    accuracy_metric: AccuracyMetric
    validation_samples: int
    output_errors: Mapping[str, OutputError]
    latency: Latency | None = None
    warnings: tuple[str, ...] = field(default=())
    """Plain statements of what the compression does not buy on the target (e.g. fp16 on CPU)."""

    @property
    def size_ratio(self) -> float | None:
        """Baseline model file bytes / this model file's (higher is smaller)."""
        if self.baseline_model_bytes is None:
            return None
        return round(self.baseline_model_bytes / self.model_bytes, 4)

    @property
    def artifact_size_ratio(self) -> float | None:
        if self.baseline_artifact_bytes is None:
            return None
        return round(self.baseline_artifact_bytes / self.artifact_bytes, 4)

    @property
    def accuracy_delta(self) -> float:
        return self.accuracy - self.baseline_accuracy

    def to_dict(self) -> dict[str, Any]:
        """The report as `conch.json` holds it: camelCase keys, absent values left out."""
        t = self.transform
        report: dict[str, Any] = {
            "quantization": t.quantization,
            "quantizer": t.quantizer,
            "calibrationSamples": t.calibration_samples,
            "distilledFrom": t.distilled_from,
            "distillation": None
            if t.distillation is None
            else {
                "epochs": t.distillation.epochs,
                "temperature": t.distillation.temperature,
                "alpha": t.distillation.alpha,
                "samples": t.distillation.samples,
            },
            "sparsity": None if t.sparsity is None else round(t.sparsity, 6),
            "targetSparsity": t.target_sparsity,
            "fp16": True if t.fp16 else None,
            "baselineVersion": self.baseline_version,
            "modelBytes": self.model_bytes,
            "baselineModelBytes": self.baseline_model_bytes,
            "sizeRatio": self.size_ratio,
            "artifactBytes": self.artifact_bytes,
            "baselineArtifactBytes": self.baseline_artifact_bytes,
            "artifactSizeRatio": self.artifact_size_ratio,
            "baselineAccuracy": self.baseline_accuracy,
            "accuracy": self.accuracy,
            "accuracyMetric": self.accuracy_metric,
            "accuracyDelta": self.accuracy_delta,
            "validationSamples": self.validation_samples,
            "outputErrors": {
                name: {"maxAbsError": e.max_abs_error, "meanAbsError": e.mean_abs_error}
                for name, e in self.output_errors.items()
            },
            "latency": None if self.latency is None else self.latency.to_dict(),
            "warnings": list(self.warnings) or None,
        }
        return {k: v for k, v in report.items() if v is not None}

    def to_crd(self) -> dict[str, Any]:
        """ModelVersion `spec.compression`: the fields the CRD has, fractions in [0, 1]."""
        t = self.transform
        block: dict[str, Any] = {
            "quantization": t.quantization,
            "sparsity": None if t.sparsity is None else _fraction(t.sparsity),
            "fp16": True if t.fp16 else None,
            "distilledFrom": t.distilled_from,
            "baselineVersion": self.baseline_version,
            "baselineAccuracy": _fraction(self.baseline_accuracy),
            "accuracy": _fraction(self.accuracy),
            "accuracyMetric": self.accuracy_metric,
            "sizeBytes": self.artifact_bytes,
            "latency": None if self.latency is None else self.latency.to_dict(),
        }
        return {k: v for k, v in block.items() if v is not None}


def _fraction(value: float) -> float:
    return min(1.0, max(0.0, round(float(value), 6)))


SLOWER = 0.95
"""Below this speedup (baseline time / this time) a compressed model is called slower."""
SAME_SIZE = 1.05
"""Below this size ratio a compressed model file is called no smaller."""


def compression_warnings(
    report: CompressionReport, device: Literal["cpu", "gpu"]
) -> tuple[str, ...]:
    """What the compression does not buy on `device`, in plain words and measured figures,
    so that a smaller-looking variant that serves slower says so."""
    t, said = report.transform, []
    if t.fp16 and device == "cpu":
        said.append(
            "fp16 is for GPUs: CPUs have no fast half-precision kernels, so on a CPU this "
            "model serves slower than fp32"
        )
    unstructured = t.sparsity is not None and t.quantization == "none" and t.distillation is None
    if unstructured and (report.size_ratio or 1.0) < SAME_SIZE:
        said.append(
            "pruning zeroes weights in place (unstructured): the model file keeps its size "
            f"({report.size_ratio or 1.0:.2f}x smaller; only the gzip'd artifact shrinks) and "
            "dense kernels run no faster; combine it with int8 or distillation"
        )
    speedup = None if report.latency is None else report.latency.speedup()
    if speedup is not None and min(speedup) < SLOWER:
        assert report.latency is not None
        said.append(
            f"slower than the uncompressed model on {report.latency.threads} {device} "
            f"thread(s): {1 / speedup[0]:.2f}x the time at batch 1, {1 / speedup[1]:.2f}x at "
            f"batch {report.latency.max_batch}"
        )
    return tuple(said)
