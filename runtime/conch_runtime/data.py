"""Named batches of tensors: read and write them (.npz), check them, generate them.

Example, validation and distillation data are all one shape: a mapping from input name to
a batched array, plus an optional `labels` array (class indices) for measuring accuracy.
The files are plain numpy `.npz` archives (loaded with allow_pickle=False).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from conch_runtime.signature import Signature
from conch_runtime.tool_errors import InvalidData, InvalidSignature

__all__ = ["LABELS", "Batch", "Dataset", "generate_inputs", "load_npz", "save_npz"]

LABELS = "labels"
"""Name of the optional array of class indices in a dataset file."""

Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Dataset:
    """Inputs by name (in signature order once checked) and optional class labels."""

    inputs: Batch
    labels: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(next(iter(self.inputs.values())).shape[0])

    def ordered(self, signature: Signature) -> Dataset:
        """The same data with inputs in the signature's order, checked against it."""
        try:
            signature.check_inputs(self.inputs)
        except InvalidSignature as exc:
            raise InvalidData(exc.message) from None
        if self.labels is not None and int(self.labels.shape[0]) != len(self):
            raise InvalidData(f"{len(self)} samples but {self.labels.shape[0]} labels")
        return Dataset({n: self.inputs[n] for n in signature.input_names}, self.labels)

    def batches(self, size: int) -> Iterator[Batch]:
        for start in range(0, len(self), size):
            yield {n: t[start : start + size] for n, t in self.inputs.items()}

    def head(self, n: int) -> Dataset:
        labels = None if self.labels is None else self.labels[:n]
        return Dataset({k: t[:n] for k, t in self.inputs.items()}, labels)

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Dataset:
        """From a mapping of names to arrays or tensors; `labels` is taken out if present."""
        tensors = {name: _tensor(name, value) for name, value in data.items()}
        labels = tensors.pop(LABELS, None)
        if not tensors:
            raise InvalidData("a dataset needs at least one input tensor")
        sizes = {int(t.shape[0]) if t.dim() else -1 for t in tensors.values()}
        if len(sizes) != 1 or -1 in sizes or 0 in sizes:
            raise InvalidData(f"inputs need one non-empty leading batch dimension, got {sizes}")
        return cls(tensors, labels.long() if labels is not None else None)

    def to_arrays(self) -> dict[str, np.ndarray[Any, Any]]:
        arrays = {n: t.numpy() for n, t in self.inputs.items()}
        if self.labels is not None:
            arrays[LABELS] = self.labels.numpy()
        return arrays


def _tensor(name: str, value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    try:
        return torch.from_numpy(np.ascontiguousarray(value))
    except (TypeError, ValueError) as exc:
        raise InvalidData(f"{name!r}: not a numeric array ({exc})") from None


def load_npz(path: Path) -> Dataset:
    """Read a dataset written by numpy.savez (or `save_npz`)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError) as exc:
        raise InvalidData(f"cannot read {path}: {exc}") from None
    return Dataset.of(arrays)


def save_npz(path: Path, arrays: Mapping[str, np.ndarray[Any, Any] | torch.Tensor]) -> None:
    """Write arrays uncompressed; names are kept as given (no `.npy` suffix in them)."""
    plain = {
        n: (a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else a)
        for n, a in arrays.items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        np.savez(out, **plain)


def generate_inputs(
    signature: Signature, samples: int, *, seed: int = 0, like: Dataset | None = None
) -> Dataset:
    """Random inputs that fit `signature`: floats ~ N(0, 1); integers and booleans drawn
    from the range seen in `like` (an example batch) when given, else from {0, 1}.
    Variable dims (-1) get size 4."""
    generator = torch.Generator().manual_seed(seed)
    inputs: Batch = {}
    for spec in signature.inputs:
        shape = (samples, *(4 if d == -1 else d for d in spec.dims))
        if spec.dtype.is_floating_point:
            inputs[spec.name] = torch.randn(shape, generator=generator).to(spec.dtype)
            continue
        low, high = 0, 1
        if like is not None and spec.name in like.inputs:
            seen = like.inputs[spec.name]
            low, high = int(seen.min()), int(seen.max())
        inputs[spec.name] = torch.randint(low, high + 1, shape, generator=generator).to(spec.dtype)
    return Dataset(inputs)
