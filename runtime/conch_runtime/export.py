"""Serialize a (compressed) model for one Triton format, and load it back to check it.

- ``python``: an exported program (``model.pt2``, ``torch.export``) that the generated
  Python-backend ``model.py`` runs; a TorchScript input stays TorchScript (``model.pt``).
  torch 2.10+ deprecates ``torch.jit.trace``/``script``, and torchao's int8 tensors cannot be
  TorchScripted, so the exported program is the default.
- ``torchscript``: ``model.pt`` for Triton's ``pytorch_libtorch`` platform (traced).
- ``onnx``: ``model.onnx`` for ``onnxruntime_onnx`` (torch's dynamo exporter), int8 applied
  by onnxruntime's dynamic quantizer on the graph.

The batch dimension (and every -1 dim of the signature) is exported as dynamic.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from conch_runtime.data import Batch
from conch_runtime.models import quiet_deprecations
from conch_runtime.signature import Signature, as_outputs
from conch_runtime.tool_errors import ExportFailed, InvalidRepository

__all__ = ["FORMATS", "MODEL_FILES", "Format", "SavedModel", "export_model", "load_saved"]

Format = Literal["python", "torchscript", "onnx"]
FORMATS: tuple[Format, ...] = ("python", "torchscript", "onnx")
MODEL_FILES: dict[str, str] = {".pt2": "exported", ".pt": "torchscript", ".onnx": "onnx"}

SavedModel = Callable[..., list[torch.Tensor]]
"""A loaded model file: takes the inputs positionally, returns the outputs as a list."""


def _dynamic_shapes(signature: Signature, module: nn.Module | None = None) -> tuple[Any, ...]:
    """Per-input dynamic dims: the batch (shared by all inputs) and every -1 dim. For a
    `forward(*inputs)` the spec is nested once, as torch.export wants for varargs."""
    batch = torch.export.Dim("batch", max=max(2, signature.max_batch_size))
    shapes = []
    for spec in signature.inputs:
        axes: dict[int, Any] = {0: batch}
        for axis, d in enumerate(spec.dims, start=1):
            if d == -1:
                axes[axis] = torch.export.Dim.DYNAMIC
        shapes.append(axes)
    if module is not None and _takes_varargs(module):
        return (tuple(shapes),)
    return tuple(shapes)


def _takes_varargs(module: nn.Module) -> bool:
    try:
        parameters = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):
        return False
    kinds = [p.kind for p in parameters]
    return kinds == [inspect.Parameter.VAR_POSITIONAL]


def export_model(
    module: nn.Module,
    signature: Signature,
    example: Batch,
    format: Format,
    directory: Path,
    *,
    onnx_int8: bool = False,
) -> Path:
    """Write the model file for `format` into `directory`; returns its path.

    `example` is a batch of at least two samples in signature order (a batch of one would
    let the exporter specialize the batch dimension to 1).
    """
    directory.mkdir(parents=True, exist_ok=True)
    args = tuple(example[name] for name in signature.input_names)
    try:
        if format == "onnx":
            return _export_onnx(module, signature, args, directory, onnx_int8)
        if isinstance(module, torch.jit.ScriptModule):
            path = directory / "model.pt"
            with quiet_deprecations():
                torch.jit.save(module, str(path))
            return path
        if format == "torchscript":
            path = directory / "model.pt"
            with quiet_deprecations():
                traced = torch.jit.trace(module, args, check_trace=False)  # type: ignore[no-untyped-call]
                torch.jit.save(traced, str(path))
            return path
        path = directory / "model.pt2"
        program = torch.export.export(
            module, args, dynamic_shapes=_dynamic_shapes(signature, module)
        )
        torch.export.save(program, path)
        return path
    except ExportFailed:
        raise
    except Exception as exc:
        if "specialized it to be a constant" in str(exc):
            raise ExportFailed(
                f"exporting for the {format} format: the model fixes the batch dimension to "
                f"{len(args[0])} (an exported program given as input must have been exported "
                "with a dynamic batch: dynamic_shapes={0: Dim('batch')} per input)"
            ) from exc
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ExportFailed(
            f"exporting for the {format} format failed: {type(exc).__name__}: {message}"
        ) from exc


def _export_onnx(
    module: nn.Module,
    signature: Signature,
    args: tuple[torch.Tensor, ...],
    directory: Path,
    int8: bool,
) -> Path:
    path = directory / "model.onnx"
    with quiet_deprecations(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*axis name.*")
        program = torch.onnx.export(
            module,
            args,
            dynamo=True,
            input_names=signature.input_names,
            output_names=signature.output_names,
            dynamic_shapes=_dynamic_shapes(signature, module),
            external_data=False,
            verbose=False,
        )
    if program is None:  # pragma: no cover - the dynamo exporter always returns a program
        raise ExportFailed("torch.onnx.export returned nothing")
    program.save(str(path), external_data=False)
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        with tempfile.TemporaryDirectory() as scratch, _quiet_root_logger():
            quantized = Path(scratch) / "model.int8.onnx"
            quantize_dynamic(path, quantized, weight_type=QuantType.QInt8)
            shutil.move(quantized, path)
    return path


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime's quantizer logs advice on the root logger; keep it out of our output."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def load_saved(path: Path) -> SavedModel:
    """Load a model file written by `export_model`, to run it the way the server will."""
    kind = MODEL_FILES.get(path.suffix)
    if kind is None or not path.is_file():
        raise InvalidRepository(f"{path}: not a model file (one of {sorted(MODEL_FILES)})")
    if kind == "onnx":
        return _load_onnx(path)
    try:
        module: nn.Module
        if kind == "exported":
            module = torch.export.load(path).module()
        else:
            with quiet_deprecations():
                module = torch.jit.load(str(path), map_location="cpu").eval()  # type: ignore[no-untyped-call]
    except Exception as exc:
        raise InvalidRepository(f"{path}: cannot load: {type(exc).__name__}: {exc}") from None

    def run(*inputs: torch.Tensor) -> list[torch.Tensor]:
        with torch.inference_mode():
            return as_outputs(module(*inputs))

    return run


def _load_onnx(path: Path) -> SavedModel:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def run(*inputs: torch.Tensor) -> list[torch.Tensor]:
        feed = {n: np.ascontiguousarray(t.numpy()) for n, t in zip(names, inputs, strict=True)}
        return [torch.from_numpy(np.asarray(o)) for o in session.run(None, feed)]

    return run
