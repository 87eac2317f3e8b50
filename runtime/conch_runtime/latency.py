"""Latency of packaged model files, measured the way the issue's targets are stated.

Each model runs one batch at a time on a fixed number of intra-op threads (torch's and
onnxruntime's: `load_saved` opens ONNX sessions on one thread). Models are timed in
alternating rounds in one process, so a noisy, shared machine slows them alike and their
ratio stays meaningful; each figure is the median of its calls.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch

from conch_runtime.data import Batch, Dataset
from conch_runtime.export import SavedModel

__all__ = ["BatchTimes", "batch_of", "measure", "threads"]

BatchTimes = tuple[float, float]
"""Median milliseconds at batch 1 and at the max batch."""


@contextmanager
def threads(count: int) -> Iterator[None]:
    """torch's intra-op thread count set to `count`, and put back."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def batch_of(data: Dataset, size: int) -> Batch:
    """The first `size` samples of `data`, repeated when it holds fewer."""
    repeats = -(-size // len(data))
    return {n: torch.cat([t] * repeats)[:size] for n, t in data.inputs.items()}


def measure(
    models: Mapping[str, SavedModel],
    data: Dataset,
    max_batch: int,
    *,
    thread_count: int = 1,
    rounds: int = 5,
    calls: int = 20,
    round_budget_s: float = 0.05,
) -> dict[str, BatchTimes]:
    """Median milliseconds of each model at batch 1 and `max_batch`: `rounds` rounds, each
    timing every model in turn for up to `calls` calls or `round_budget_s` per batch size."""
    batches = (batch_of(data, 1), batch_of(data, max(1, max_batch)))
    samples: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in models}
    with threads(thread_count), torch.inference_mode():
        for model in models.values():  # warm up: first calls allocate and pack
            for batch in batches:
                for _ in range(3):
                    model(*batch.values())
        for _ in range(rounds):
            for name, model in models.items():
                for batch, times in zip(batches, samples[name], strict=True):
                    times.extend(_time(model, batch, calls, round_budget_s))
    return {
        name: (statistics.median(one) * 1e3, statistics.median(most) * 1e3)
        for name, (one, most) in samples.items()
    }


def _time(model: SavedModel, batch: Batch, calls: int, budget_s: float) -> list[float]:
    inputs = list(batch.values())
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < calls and (not times or time.perf_counter() < deadline):
        began = time.perf_counter()
        model(*inputs)
        times.append(time.perf_counter() - began)
    return times
