"""Compressions of a loaded model, each optional, applied in one fixed order.

    distill (a smaller student learns from the teacher)  ->  prune  ->  int8 | fp16

- distillation trains the student (an eager module from a factory) on the teacher's soft
  outputs (and the labels, when the data has them);
- pruning zeroes the smallest-magnitude fraction of every Linear/Conv weight (of every
  weight matrix for exported and TorchScript models) in place: permanent, no masks left;
- int8 is static quantization with torch.ao's x86 backend (FX graph mode): weights int8
  per channel, activations int8 with scales calibrated once on the calibration data (the
  validation data by default), so each sample's answer is independent of the requests
  Triton batches with it. The result is a frozen TorchScript program of quantized kernels
  (fbgemm/oneDNN), which Triton runs with the Python or the libtorch backend. Measured on
  one thread, it is several times faster than fp32 (benchmarks/compression.py); torchao's
  dynamic int8, the previous path, was 7x slower, having no fast CPU kernels;
- fp16 casts weights to half precision inside a wrapper that keeps the signature's dtypes,
  so clients and the rollout's canary see the same interface. It is for GPU targets:
  CPUs have no fast fp16 matmul, and `package` warns when the target is a CPU.

int8 and fp16 exclude each other. int8 is refused for the ONNX format: onnxruntime's
dynamic quantizer scales activations per tensor, over the whole batch, so a sample's answer
would depend on the requests Triton batches with it (top-1 labels changed between batch
sizes 1, 7 and 64 on the test model); its static (QDQ) quantizer is not wired in yet.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from conch_runtime.data import Batch, Dataset
from conch_runtime.models import LoadedModel, load_model, quiet_deprecations
from conch_runtime.progress import Reporter, SilentReporter
from conch_runtime.report import AccuracyMetric
from conch_runtime.signature import Signature, as_outputs
from conch_runtime.tool_errors import InvalidData, UnsupportedCompression
from conch_runtime.torchscript import to_torchscript

__all__ = [
    "INT8_QUANTIZER",
    "AccuracyMetric",
    "CompressionOptions",
    "DistillOptions",
    "HalfPrecision",
    "accuracy",
    "agreement",
    "distill",
    "prune",
    "quantize_int8",
    "run_model",
]

Format = Literal["python", "torchscript", "onnx"]


@dataclass(frozen=True)
class DistillOptions:
    """Train `student` (a module:factory or nn.Module) to imitate the model being packaged."""

    student: str | nn.Module
    data: Dataset
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 3e-3
    temperature: float = 2.0
    alpha: float = 0.7
    """Weight of the teacher's soft targets; 1 - alpha goes to the labels when present."""
    teacher_version: str | None = None
    """ModelVersion name of the teacher, written as compression.distilledFrom."""
    seed: int = 0
    search_path: tuple[Path, ...] = ()


@dataclass(frozen=True)
class CompressionOptions:
    int8: bool = False
    sparsity: float | None = None
    """Target fraction of weights to prune to zero (0 < sparsity < 1)."""
    fp16: bool = False
    distill: DistillOptions | None = None
    calibration: Dataset | None = None
    """int8: the inputs that fix the activation scales (default: the validation data)."""

    def __post_init__(self) -> None:
        if self.int8 and self.fp16:
            raise UnsupportedCompression("int8 and fp16 exclude each other; choose one")
        if self.sparsity is not None and not 0 < self.sparsity < 1:
            raise UnsupportedCompression(f"sparsity must be in (0, 1), got {self.sparsity}")

    @property
    def any(self) -> bool:
        return self.int8 or self.fp16 or self.sparsity is not None or self.distill is not None

    def check(self, model: LoadedModel, format: Format, device: str = "cpu") -> None:
        """Refuse, before any work, what this model kind, format or device cannot take."""
        if self.int8 and device != "cpu":
            raise UnsupportedCompression(
                "int8 is for CPU serving: its x86 quantized kernels do not run on GPUs; "
                "package it with --device cpu, or use --fp16 for a GPU"
            )
        if self.int8 and format == "onnx":
            raise UnsupportedCompression(
                "int8 with the onnx format: onnxruntime's dynamic int8 scales activations over "
                "the whole batch, so a sample's answer would depend on the requests batched "
                "with it; use --format python or torchscript (static int8, calibrated scales)"
            )
        eager = self.distill is not None or model.kind == "eager"
        if self.int8 and not eager:
            raise UnsupportedCompression(
                f"int8 quantizes the model's modules (Linear, Conv), which a {model.kind} model "
                "no longer has; package it from its module:factory and state dict"
            )
        if self.fp16 and model.kind == "torchscript" and self.distill is None:
            raise UnsupportedCompression(
                "fp16 of a TorchScript model: export it with torch.export (.pt2) or give a "
                "module:factory"
            )


# -- running and measuring ---------------------------------------------------------------------


def run_model(module: nn.Module, data: Dataset, batch_size: int = 256) -> list[torch.Tensor]:
    """All outputs of `module` over `data`, batch by batch, concatenated on dim 0."""
    parts: list[list[torch.Tensor]] = []
    with torch.inference_mode():
        for batch in data.batches(batch_size):
            parts.append([t.detach().cpu() for t in as_outputs(module(*batch.values()))])
    return [torch.cat(column) for column in zip(*parts, strict=True)]


def _logits_index(outputs: Sequence[torch.Tensor]) -> int:
    for i, t in enumerate(outputs):
        if t.dtype.is_floating_point and t.dim() == 2:
            return i
    raise InvalidData("accuracy and distillation need a floating [batch, classes] output")


def accuracy(outputs: Sequence[torch.Tensor], labels: torch.Tensor) -> float:
    """Share of samples whose arg-max over the first [batch, classes] output is the label."""
    logits = outputs[_logits_index(outputs)]
    return float((logits.argmax(dim=1) == labels).float().mean())


AGREEMENT_RTOL, AGREEMENT_ATOL = 1e-2, 1e-3
"""Within these an output agrees with the baseline's (loose enough for fp16 rounding)."""


def agreement(
    outputs: Sequence[torch.Tensor], baseline: Sequence[torch.Tensor]
) -> tuple[AccuracyMetric, float]:
    """Share of samples on which `outputs` agree with the uncompressed model's `baseline`:
    the same top-1 class when there is a floating [batch, classes] output, else every
    output within AGREEMENT_ATOL + AGREEMENT_RTOL * |baseline| (integers exactly). Without
    labels this stands in for accuracy, so a compression that changes answers is caught."""
    try:
        index: int | None = _logits_index(baseline)
    except InvalidData:
        index = None
    if index is not None and baseline[index].shape[1] > 1:
        same = outputs[index].argmax(dim=1) == baseline[index].argmax(dim=1)
        return "top1-agreement-with-baseline", float(same.float().mean())
    agree = torch.ones(len(baseline[0]), dtype=torch.bool)
    for got, want in zip(outputs, baseline, strict=True):
        if want.is_floating_point():
            close = torch.isclose(
                got.double(), want.double(), AGREEMENT_RTOL, AGREEMENT_ATOL, equal_nan=True
            )
        else:
            close = got == want
        agree &= close.reshape(len(close), -1).all(dim=1)
    return "outputs-agreement-with-baseline", float(agree.float().mean())


# -- pruning -----------------------------------------------------------------------------------

_PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_QUANTIZABLE = _PRUNABLE


def _prunable_weights(module: nn.Module, kind: str) -> list[torch.Tensor]:
    if kind == "eager":
        return [m.weight for m in module.modules() if isinstance(m, _PRUNABLE)]
    return [p for name, p in module.named_parameters() if name.endswith("weight") and p.dim() >= 2]


def prune(module: nn.Module, sparsity: float, kind: str = "eager") -> float:
    """Zero the `sparsity` smallest-magnitude share of each prunable weight, in place.

    Returns the measured sparsity: zeros over all prunable weight elements.
    """
    weights = _prunable_weights(module, kind)
    if not weights:
        raise UnsupportedCompression("pruning found no Linear or Conv weights to prune")
    with torch.no_grad():
        for weight in weights:
            flat = weight.view(-1)
            k = math.floor(sparsity * flat.numel())
            if k:
                flat[torch.topk(flat.abs(), k, largest=False).indices] = 0
    zeros = sum(int((w == 0).sum()) for w in weights)
    return zeros / sum(w.numel() for w in weights)


# -- int8 --------------------------------------------------------------------------------------


INT8_QUANTIZER = "torch.ao x86 static (FX graph mode, per-channel weights)"


def _qconfig_mapping() -> Any:
    """x86 int8 for the layers that have fast int8 kernels and the cheap ops between them;
    everything else (embeddings, integer inputs, custom ops) stays fp32, so an integer input
    never meets an activation observer."""
    import operator

    from torch.ao.quantization import QConfigMapping, get_default_qconfig

    qconfig = get_default_qconfig("x86")  # type: ignore[no-untyped-call]
    mapping = QConfigMapping().set_global(None)
    for kind in (
        *_QUANTIZABLE,
        nn.ReLU,
        nn.MaxPool1d,
        nn.MaxPool2d,
        nn.AdaptiveAvgPool2d,
        nn.Flatten,
        nn.BatchNorm2d,
        torch.relu,
        torch.nn.functional.relu,
        torch.flatten,
        torch.add,
        operator.add,
    ):
        mapping.set_object_type(kind, qconfig)
    return mapping


def quantize_int8(
    module: nn.Module, signature: Signature, calibration: Dataset, example: Batch
) -> torch.jit.ScriptModule:
    """Static int8 of `module` for x86 CPUs: observe activations over `calibration`, convert
    to quantized kernels, and return the frozen TorchScript program (checked against the
    quantized model on probe batches of other sizes, see `to_torchscript`)."""
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    if not any(isinstance(m, _QUANTIZABLE) for m in module.modules()):
        raise UnsupportedCompression("int8 found no Linear or Conv layer to quantize")
    args = tuple(example[name] for name in signature.input_names)
    engine = torch.backends.quantized.engine
    try:
        with quiet_deprecations(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*TorchScript type system.*")
            torch.backends.quantized.engine = "x86"
            try:
                prepared = prepare_fx(module, _qconfig_mapping(), args)
            except Exception as exc:
                raise UnsupportedCompression(
                    "int8: torch.fx cannot trace the model (data-dependent control flow or "
                    f"Python-only code?): {type(exc).__name__}: {str(exc).splitlines()[0]}"
                ) from None
            with torch.no_grad():  # observers keep state: no inference tensors
                for batch in calibration.ordered(signature).batches(256):
                    prepared(*batch.values())
            quantized = convert_fx(prepared)
            program, _ = to_torchscript(quantized, signature, example)
            frozen: torch.jit.ScriptModule = torch.jit.freeze(program.eval())
    finally:
        torch.backends.quantized.engine = engine
    return frozen


# -- fp16 --------------------------------------------------------------------------------------


class HalfPrecision(nn.Module):
    """`inner` in half precision; floating inputs are cast to fp16 on the way in and
    floating outputs back to `output_dtypes` on the way out."""

    def __init__(self, inner: nn.Module, output_dtypes: Sequence[torch.dtype]) -> None:
        super().__init__()
        self.inner = inner.half()
        self.output_dtypes = list(output_dtypes)
        self.train(inner.training)

    def forward(self, *inputs: torch.Tensor) -> Any:
        cast = [t.half() if t.is_floating_point() else t for t in inputs]
        outputs = as_outputs(self.inner(*cast))
        back = [
            t.to(dtype) if t.is_floating_point() else t
            for t, dtype in zip(outputs, self.output_dtypes, strict=True)
        ]
        return back[0] if len(back) == 1 else tuple(back)


# -- distillation ------------------------------------------------------------------------------


def distill(
    teacher: nn.Module, options: DistillOptions, reporter: Reporter | None = None
) -> nn.Module:
    """Train the student on the teacher's outputs over `options.data`; returns it in eval mode.

    The loss is the temperature-scaled KL divergence to the teacher's softened first
    [batch, classes] output, mixed with cross-entropy on the labels when the data has them;
    other outputs are not trained on.
    """
    reporter = reporter or SilentReporter()
    loaded = load_model(options.student, search_path=options.search_path)
    if loaded.kind != "eager":
        raise UnsupportedCompression("the student must be an eager module (a module:factory)")
    student = loaded.module
    data = options.data
    targets = run_model(teacher, data)
    index = _logits_index(targets)
    soft = torch.softmax(targets[index].float() / options.temperature, dim=1)
    generator = torch.Generator().manual_seed(options.seed)
    torch.manual_seed(options.seed)
    optimizer = torch.optim.Adam(student.parameters(), lr=options.learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=options.epochs)
    n, t = len(data), options.temperature
    student.train()
    with reporter.step(f"Distilling the student ({options.epochs} epochs)", options.epochs) as adv:
        for _ in range(options.epochs):
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, options.batch_size):
                idx = order[start : start + options.batch_size]
                outputs = as_outputs(student(*(x[idx] for x in data.inputs.values())))
                logits = outputs[index].float()
                loss = torch.nn.functional.kl_div(
                    torch.log_softmax(logits / t, dim=1), soft[idx], reduction="batchmean"
                ) * (t * t)
                if data.labels is not None:
                    hard = torch.nn.functional.cross_entropy(logits, data.labels[idx])
                    loss = options.alpha * loss + (1 - options.alpha) * hard
                optimizer.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
            schedule.step()
            adv(1)
    return student.eval()
