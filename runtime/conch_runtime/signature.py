"""A model's interface in Triton's terms: named tensors, data types, dims and batching.

The same shape as a ModelVersion's `spec.signature` (camelCase in YAML), so what `package`
writes into config.pbtxt and into the ModelVersion is one value. Inferring a signature runs
the model once on an example batch; everything else here is pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from conch_runtime.tool_errors import InvalidSignature

__all__ = [
    "DEFAULT_MAX_BATCH_SIZE",
    "Signature",
    "TensorSpec",
    "as_outputs",
    "infer_signature",
    "numpy_dtype",
    "torch_dtype",
    "triton_type",
]

DEFAULT_MAX_BATCH_SIZE = 64

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]*$")

# Triton data type <-> torch dtype. TYPE_STRING has no tensor form and is not supported here.
_TORCH: dict[str, torch.dtype] = {
    "TYPE_BOOL": torch.bool,
    "TYPE_UINT8": torch.uint8,
    "TYPE_UINT16": torch.uint16,
    "TYPE_UINT32": torch.uint32,
    "TYPE_UINT64": torch.uint64,
    "TYPE_INT8": torch.int8,
    "TYPE_INT16": torch.int16,
    "TYPE_INT32": torch.int32,
    "TYPE_INT64": torch.int64,
    "TYPE_FP16": torch.float16,
    "TYPE_FP32": torch.float32,
    "TYPE_FP64": torch.float64,
    "TYPE_BF16": torch.bfloat16,
}
_FROM_TORCH = {dtype: name for name, dtype in _TORCH.items()}
_NUMPY: dict[str, str] = {
    "TYPE_BOOL": "bool",
    "TYPE_UINT8": "uint8",
    "TYPE_UINT16": "uint16",
    "TYPE_UINT32": "uint32",
    "TYPE_UINT64": "uint64",
    "TYPE_INT8": "int8",
    "TYPE_INT16": "int16",
    "TYPE_INT32": "int32",
    "TYPE_INT64": "int64",
    "TYPE_FP16": "float16",
    "TYPE_FP32": "float32",
    "TYPE_FP64": "float64",
}


def triton_type(dtype: torch.dtype) -> str:
    """The Triton data type of a torch dtype (TYPE_FP32 for torch.float32)."""
    try:
        return _FROM_TORCH[dtype]
    except KeyError:
        raise InvalidSignature(f"torch dtype {dtype} has no Triton data type") from None


def torch_dtype(data_type: str) -> torch.dtype:
    try:
        return _TORCH[data_type]
    except KeyError:
        raise InvalidSignature(f"unsupported Triton data type {data_type!r}") from None


def numpy_dtype(data_type: str) -> np.dtype[Any]:
    """The numpy dtype tritonclient uses for a Triton data type (BF16 has none)."""
    try:
        return np.dtype(_NUMPY[data_type])
    except KeyError:
        raise InvalidSignature(f"Triton data type {data_type!r} has no numpy form") from None


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor: Triton data type and dims without the batch dimension (-1: any)."""

    name: str
    data_type: str
    dims: tuple[int, ...]

    def __post_init__(self) -> None:
        if not _NAME.match(self.name) or len(self.name) > 128:
            raise InvalidSignature(
                f"tensor name {self.name!r}: start with a letter or underscore, then letters, "
                "digits, _ . : - (at most 128)"
            )
        torch_dtype(self.data_type)
        numpy_dtype(self.data_type)
        if not 1 <= len(self.dims) <= 8 or any(d == 0 or d < -1 for d in self.dims):
            raise InvalidSignature(
                f"tensor {self.name!r}: dims {list(self.dims)} must be 1 to 8 positive sizes or -1"
            )

    @property
    def dtype(self) -> torch.dtype:
        return _TORCH[self.data_type]

    def to_dict(self) -> dict[str, Any]:
        """The ModelVersion form: {name, dataType, dims}."""
        return {"name": self.name, "dataType": self.data_type, "dims": list(self.dims)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TensorSpec:
        try:
            return cls(
                str(data["name"]), str(data["dataType"]), tuple(int(d) for d in data["dims"])
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidSignature(f"tensor {dict(data)!r}: {exc!r}") from None

    def matches(self, shape: Sequence[int]) -> bool:
        """Whether a per-sample shape (batch dimension removed) fits these dims."""
        return len(shape) == len(self.dims) and all(
            d in (-1, s) for d, s in zip(self.dims, shape, strict=True)
        )


@dataclass(frozen=True)
class Signature:
    """Inputs and outputs in the order the model takes and returns them."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE

    def __post_init__(self) -> None:
        if not self.inputs or not self.outputs:
            raise InvalidSignature("a signature needs at least one input and one output")
        if not 1 <= self.max_batch_size <= 65536:
            # 0 (no batching) is valid for Triton, but every format here batches on dim 0.
            raise InvalidSignature(f"maxBatchSize must be 1..65536, got {self.max_batch_size}")
        names = [t.name for t in (*self.inputs, *self.outputs)]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise InvalidSignature(f"tensor names must be unique, repeated: {duplicates}")

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def to_dict(self) -> dict[str, Any]:
        """The ModelVersion `spec.signature` form (camelCase)."""
        return {
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "maxBatchSize": self.max_batch_size,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        try:
            return cls(
                tuple(TensorSpec.from_dict(t) for t in data["inputs"]),
                tuple(TensorSpec.from_dict(t) for t in data["outputs"]),
                int(data.get("maxBatchSize", DEFAULT_MAX_BATCH_SIZE)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidSignature(f"malformed signature: {exc!r}") from None

    def check_inputs(self, inputs: Mapping[str, torch.Tensor]) -> None:
        """Raise InvalidSignature unless `inputs` is a batch this signature accepts."""
        if sorted(inputs) != sorted(self.input_names):
            raise InvalidSignature(
                f"inputs are {sorted(inputs)}, the signature expects {sorted(self.input_names)}"
            )
        sizes = {int(t.shape[0]) if t.dim() else -1 for t in inputs.values()}
        if len(sizes) != 1 or -1 in sizes:
            raise InvalidSignature("every input needs the same leading batch dimension")
        for spec in self.inputs:
            tensor = inputs[spec.name]
            if tensor.dtype != spec.dtype:
                raise InvalidSignature(
                    f"input {spec.name!r} is {tensor.dtype}, the signature says {spec.data_type}"
                )
            if not spec.matches(tuple(tensor.shape[1:])):
                raise InvalidSignature(
                    f"input {spec.name!r} has per-sample shape {list(tensor.shape[1:])}, "
                    f"the signature says {list(spec.dims)}"
                )


def as_outputs(result: object) -> list[torch.Tensor]:
    """A model's return value as a list of tensors (a tensor, or a tuple/list of them)."""
    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, list | tuple) and all(isinstance(t, torch.Tensor) for t in result):
        return list(result)
    raise InvalidSignature(
        f"the model returned {type(result).__name__}; expected a tensor or a tuple of tensors"
    )


def infer_signature(
    model: torch.nn.Module,
    example: Mapping[str, torch.Tensor],
    *,
    output_names: Sequence[str] | None = None,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    dynamic: Mapping[str, Sequence[int]] | None = None,
) -> Signature:
    """Run `model` once on the example batch and describe what it takes and returns.

    `example` maps input names, in the order `forward` takes them, to batched tensors.
    `dynamic` marks per-sample dims (0-based, batch excluded) that vary, by tensor name;
    the batch dimension is always variable. Outputs are named `output_0`, ... unless named.
    """
    if not example:
        raise InvalidSignature("an example input needs at least one tensor")
    dynamic = dynamic or {}
    inputs = tuple(
        TensorSpec(name, triton_type(t.dtype), _dims(t, dynamic.get(name, ())))
        for name, t in example.items()
    )
    with torch.no_grad():
        outputs = as_outputs(model(*example.values()))
    names = list(output_names) if output_names else [f"output_{i}" for i in range(len(outputs))]
    if len(names) != len(outputs):
        raise InvalidSignature(f"the model returns {len(outputs)} outputs, {len(names)} named")
    specs = tuple(
        TensorSpec(name, triton_type(t.dtype), _dims(t, dynamic.get(name, ())))
        for name, t in zip(names, outputs, strict=True)
    )
    return Signature(inputs, specs, max_batch_size)


def _dims(tensor: torch.Tensor, variable: Sequence[int]) -> tuple[int, ...]:
    if tensor.dim() < 2:
        raise InvalidSignature(
            f"tensors need a batch dimension and at least one more (shape {list(tensor.shape)}); "
            "give a per-sample scalar the shape [batch, 1]"
        )
    shape = [int(s) for s in tensor.shape[1:]]
    for axis in variable:
        if not 0 <= axis < len(shape):
            raise InvalidSignature(f"dynamic axis {axis} is outside shape {shape}")
        shape[axis] = -1
    return tuple(shape)
