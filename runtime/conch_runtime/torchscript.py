"""TorchScript for Triton's libtorch backend, never a silently frozen trace.

`torch.jit.trace` records the operations that one example ran: a branch on the data
(``if x.sum() > 0``) or a loop over a data-dependent count is frozen into the path the
example took, and the traced program is quietly wrong on other inputs. So the module is
scripted (`torch.jit.script` keeps control flow); only a module that cannot be scripted is
traced. Either program is then run beside the eager model on probe batches unlike the
example (batch sizes 1, 3, 7 and maxBatchSize; fresh values, and the same values negated)
and refused with ExportFailed when any output differs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from conch_runtime.data import Batch, Dataset, generate_inputs
from conch_runtime.models import quiet_deprecations
from conch_runtime.signature import Signature, as_outputs
from conch_runtime.tool_errors import ExportFailed

__all__ = ["PROBE_BATCH_SIZES", "Difference", "first_difference", "probe_batches", "to_torchscript"]

PROBE_BATCH_SIZES = (1, 3, 7)
"""Besides maxBatchSize: odd sizes, unlike the example's, where batch-level branches flip."""

RTOL, ATOL = 1e-4, 1e-5
"""The program runs the same kernels as the model, so only rounding noise is let through."""

Program = Callable[..., object]


@dataclass(frozen=True)
class Difference:
    """Where a program first disagreed with the model."""

    batch_size: int
    output: str
    max_abs_error: float


def to_torchscript(
    module: nn.Module, signature: Signature, example: Batch
) -> tuple[torch.jit.ScriptModule, Literal["scripted", "traced"]]:
    """A TorchScript program of `module` that matches it on the probe batches, and how it
    was made. Refuses (ExportFailed) a program that differs from the model."""
    args = tuple(example[name] for name in signature.input_names)
    how: Literal["scripted", "traced"]
    with quiet_deprecations(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # type: ignore[attr-defined]  # checked below
        try:
            program = torch.jit.script(module)
            how = "scripted"
        except Exception:  # not scriptable (varargs, Python-only code): trace, then check
            program = torch.jit.trace(module, args, check_trace=False)  # type: ignore[no-untyped-call]
            how = "traced"
    difference = first_difference(program, module, probe_batches(signature, example), signature)
    if difference is not None:
        cause = (
            "the model has data-dependent control flow that tracing froze"
            if how == "traced"
            else "the scripted program does not behave like the model"
        )
        raise ExportFailed(
            f"the {how} TorchScript program differs from the model on a batch of "
            f"{difference.batch_size} (output {difference.output!r} off by up to "
            f"{difference.max_abs_error:.3g}): {cause}; use --format python or onnx, "
            "or make the model scriptable (torch.jit.script)"
        )
    return program, how


def probe_batches(signature: Signature, example: Batch, seed: int = 0) -> list[Batch]:
    """Inputs unlike `example`: each probe size up to maxBatchSize, with fresh values and
    the same values with floating inputs negated (which flips any sign-based branch)."""
    like = Dataset(example)
    limit = signature.max_batch_size
    sizes = sorted({min(size, limit) for size in (*PROBE_BATCH_SIZES, limit)})
    batches: list[Batch] = []
    for i, size in enumerate(sizes):
        batch = generate_inputs(signature, size, seed=seed + i, like=like).inputs
        batches.append(batch)
        batches.append({n: -t if t.is_floating_point() else t for n, t in batch.items()})
    return batches


def first_difference(
    program: Program, module: nn.Module, batches: Sequence[Batch], signature: Signature
) -> Difference | None:
    """The first probe on which `program`'s outputs differ from `module`'s, or None. A
    probe the model itself cannot run is skipped; one only the program fails on differs."""
    for batch in batches:
        size = int(next(iter(batch.values())).shape[0])
        with torch.inference_mode():
            try:
                want = as_outputs(module(*batch.values()))
            except Exception:
                continue
            try:
                got = as_outputs(program(*batch.values()))
            except Exception:
                return Difference(size, signature.output_names[0], float("inf"))
        for name, w, g in zip(signature.output_names, want, got, strict=False):
            error = _error(w, g)
            if error is not None:
                return Difference(size, name, error)
        if len(want) != len(got):
            return Difference(size, signature.output_names[-1], float("inf"))
    return None


def _error(want: torch.Tensor, got: torch.Tensor) -> float | None:
    """The max abs error when `got` is not `want` (within rounding for floats), else None."""
    if want.shape != got.shape or want.dtype != got.dtype:
        return float("inf")
    if not want.is_floating_point():
        return None if torch.equal(want, got) else float((want.double() - got.double()).abs().max())
    if torch.allclose(got, want, rtol=RTOL, atol=ATOL, equal_nan=True):
        return None
    both = ~(want.isnan() & got.isnan())
    return float((want.double() - got.double()).abs()[both].max())
