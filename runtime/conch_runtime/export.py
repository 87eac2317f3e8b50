"""Serialize a (compressed) model for one Triton format, and load it back to check it.

- ``python``: an exported program (``model.pt2``, ``torch.export``) that the generated
  Python-backend ``model.py`` runs; a TorchScript program stays TorchScript (``model.pt``):
  a TorchScript input, and an int8 model (torch.ao's quantized kernels, which an exported
  program would run as slow reference ops). torch 2.10+ deprecates ``torch.jit``, so the
  exported program is the default otherwise.
- ``torchscript``: ``model.pt`` for Triton's ``pytorch_libtorch`` platform, scripted (or
  traced when it cannot be scripted) and checked against the model (see `torchscript`).
- ``onnx``: ``model.onnx`` for ``onnxruntime_onnx`` (torch's dynamo exporter); internal
  values that would share a name with an input or output are renamed.

The batch dimension (and every -1 dim of the signature) is exported as dynamic.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from conch_runtime.data import Batch
from conch_runtime.models import quiet_deprecations
from conch_runtime.signature import Signature, as_outputs
from conch_runtime.tool_errors import ExportFailed, InvalidRepository, plain
from conch_runtime.torchscript import to_torchscript

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
) -> Path:
    """Write the model file for `format` into `directory`; returns its path.

    `example` is a batch of at least two samples in signature order (a batch of one would
    let the exporter specialize the batch dimension to 1).
    """
    directory.mkdir(parents=True, exist_ok=True)
    args = tuple(example[name] for name in signature.input_names)
    if format == "onnx" and isinstance(module, torch.jit.ScriptModule):
        raise ExportFailed(
            "a TorchScript file cannot be exported to ONNX (torch's ONNX exporter needs the "
            "model's Python code); give its module:factory with --weights, or an exported "
            "program (.pt2), or package this file with --format torchscript or python"
        )
    try:
        if format == "onnx":
            return _export_onnx(module, signature, args, directory)
        if isinstance(module, torch.jit.ScriptModule):
            path = directory / "model.pt"
            with quiet_deprecations():
                torch.jit.save(module, str(path))
            return path
        if format == "torchscript":
            path = directory / "model.pt"
            script, _ = to_torchscript(module, signature, example)
            with quiet_deprecations():
                torch.jit.save(script, str(path))
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
        cause = _cause(exc)
        if "data-dependent" in cause:
            raise ExportFailed(
                f"exporting for the {format} format failed: the model branches on tensor "
                f"values, which torch.export cannot capture ({cause}); write the branch with "
                "torch.where or torch.cond, or use --format torchscript, which scripts it"
            ) from exc
        raise ExportFailed(
            f"exporting for the {format} format failed: {cause}; if the model cannot be "
            "changed, try another --format"
        ) from exc


def _cause(exc: BaseException) -> str:
    """The innermost cause of an export failure, as one plain, short line: exporters wrap
    the reason in generic steps ("This is step 1/3 ...") and colour it for a terminal."""
    root = exc
    while root.__cause__ is not None and root.__cause__ is not root:
        root = root.__cause__
    lines = [line.strip() for line in plain(str(root)).splitlines() if line.strip()]
    return plain(f"{type(root).__name__}: {lines[0] if lines else 'no message'}", 300)


def _export_onnx(
    module: nn.Module,
    signature: Signature,
    args: tuple[torch.Tensor, ...],
    directory: Path,
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
    _free_tensor_names(program.model.graph, signature)
    program.save(str(path), external_data=False)
    return path


def _free_tensor_names(graph: Any, signature: Signature) -> None:
    """Rename the graph's internal values (weights, intermediates) that hold one of the
    signature's names, so an output called e.g. ``fc.weight`` does not define that name
    twice (which onnxruntime and Triton refuse); then check that the graph's inputs and
    outputs carry exactly the signature's names."""
    wanted = set(signature.input_names) | set(signature.output_names)
    boundary = {id(v) for v in (*graph.inputs, *graph.outputs)}
    values = [*graph.initializers.values()]
    values += [v for node in graph.all_nodes() for v in node.outputs]
    taken = {v.name for v in values} | {v.name for v in (*graph.inputs, *graph.outputs)}
    for value in values:
        if value.name in wanted and id(value) not in boundary:
            new, n = f"{value.name}_internal", 1
            while new in taken:
                new, n = f"{value.name}_internal{n}", n + 1
            taken.add(new)
            value.name = new
    found = ([v.name for v in graph.inputs], [v.name for v in graph.outputs])
    if found != (signature.input_names, signature.output_names):
        raise ExportFailed(
            f"the ONNX graph's inputs and outputs are named {found[0]} and {found[1]}, not "
            f"{signature.input_names} and {signature.output_names}; choose other names "
            "(--output-names, or the signature's) that the model does not use inside"
        )


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
    try:
        session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:
        raise InvalidRepository(f"{path}: onnxruntime cannot load it: {_cause(exc)}") from None
    names = [i.name for i in session.get_inputs()]

    def run(*inputs: torch.Tensor) -> list[torch.Tensor]:
        feed = {n: np.ascontiguousarray(t.numpy()) for n, t in zip(names, inputs, strict=True)}
        return [torch.from_numpy(np.asarray(o)) for o in session.run(None, feed)]

    return run
