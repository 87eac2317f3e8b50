"""`latency.measure` without a clock to trust: which batches each model is called with, and
that every model gets its figures from the same alternating rounds."""

from __future__ import annotations

import torch

from conch_runtime.data import Dataset
from conch_runtime.latency import batch_of, measure, threads


def test_batch_of_repeats_a_short_dataset() -> None:
    data = Dataset({"x": torch.arange(3.0).reshape(3, 1)})
    batch = batch_of(data, 7)["x"]
    assert batch.shape == (7, 1)
    assert batch[:, 0].tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert batch_of(data, 1)["x"].shape == (1, 1)


def test_every_model_runs_batch_1_and_the_max_batch_on_the_threads_asked() -> None:
    seen: dict[str, list[tuple[int, int]]] = {"a": [], "b": []}

    def model(name: str):  # type: ignore[no-untyped-def]
        def run(x: torch.Tensor) -> list[torch.Tensor]:
            seen[name].append((len(x), torch.get_num_threads()))
            return [x]

        return run

    before = torch.get_num_threads()
    data = Dataset({"x": torch.zeros(5, 2)})
    times = measure({"a": model("a"), "b": model("b")}, data, 8, thread_count=1, rounds=3, calls=2)
    assert set(times) == {"a", "b"}
    assert all(one > 0 and most > 0 for one, most in times.values())
    for calls in seen.values():
        assert {size for size, _ in calls} == {1, 8}
        assert {count for _, count in calls} == {1}
        assert len(calls) == 2 * 3 + 3 * 2 * 2  # warm-up, then 3 rounds of 2 calls per size
    assert torch.get_num_threads() == before


def test_threads_puts_the_count_back() -> None:
    before = torch.get_num_threads()
    with threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
