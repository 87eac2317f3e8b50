"""Tables for the pure parts of package and validate: plain messages, the batch sizes
validate runs at, agreement with the original, and the probes a TorchScript program meets."""

from __future__ import annotations

import pytest
import torch

from conch_runtime.compress import agreement
from conch_runtime.signature import Signature, TensorSpec
from conch_runtime.tool_errors import ExportFailed, plain
from conch_runtime.torchscript import probe_batches
from conch_runtime.validate import batch_sizes


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("step \x1b[96mThis is step 1/3\x1b[0m done", None, "step This is step 1/3 done"),
        ("\x1b]8;;https://x\x07link\x1b]8;;\x07 \x1b(B", None, "link "),
        ("bell\x07 and\r carriage", None, "bell and carriage"),
        ("keeps\ttabs\nand lines", None, "keeps\ttabs\nand lines"),
        ("one two three four five six", 16, "one two three…"),
        ("abcdefghijklmnopqrstuvwxyz", 10, "abcdefghi…"),
        ("short", 10, "short"),
    ],
)
def test_plain(text: str, limit: int | None, expected: str) -> None:
    assert plain(text, limit) == expected
    assert limit is None or len(plain(text, limit)) <= limit


def test_tool_errors_never_carry_terminal_codes() -> None:
    assert ExportFailed("\x1b[1;31mred\x1b[0m").message == "red"
    assert str(ExportFailed("\x1b[1;31mred\x1b[0m")) == "red"


@pytest.mark.parametrize(
    ("max_batch_size", "expected"),
    [
        (1, (1,)),
        (2, (1, 2)),
        (7, (1, 3, 7)),
        (8, (1, 3, 7, 8)),
        (64, (1, 3, 7, 15, 31, 63, 64)),
    ],
)
def test_batch_sizes(max_batch_size: int, expected: tuple[int, ...]) -> None:
    assert batch_sizes(max_batch_size) == expected


def test_agreement_is_top1_for_classifiers() -> None:
    baseline = [torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.2, 0.1], [0.0, 3.0]])]
    outputs = [torch.tensor([[0.0, 2.0], [0.0, 1.0], [0.3, 0.1], [1.0, 0.0]])]
    assert agreement(outputs, baseline) == ("top1-agreement-with-baseline", 0.5)
    assert agreement(baseline, baseline) == ("top1-agreement-with-baseline", 1.0)


def test_agreement_compares_every_output_without_a_classifier() -> None:
    baseline = [torch.tensor([[1.0], [2.0], [3.0], [4.0]]), torch.tensor([1, 2, 3, 4])]
    outputs = [torch.tensor([[1.005], [2.5], [3.0], [4.0]]), torch.tensor([1, 2, 3, 0])]
    # sample 0 within 1e-3 + 1e-2 * 1; sample 1 off; sample 3's integer output differs
    assert agreement(outputs, baseline) == ("outputs-agreement-with-baseline", 0.5)


def test_probes_differ_from_the_example_in_size_and_sign() -> None:
    signature = Signature(
        (TensorSpec("x", "TYPE_FP32", (4,)), TensorSpec("k", "TYPE_INT64", (1,))),
        (TensorSpec("y", "TYPE_FP32", (2,)),),
        max_batch_size=16,
    )
    example = {"x": torch.ones(2, 4), "k": torch.tensor([[2], [5]])}
    probes = probe_batches(signature, example)
    assert [len(p["x"]) for p in probes] == [1, 1, 3, 3, 7, 7, 16, 16]
    for fresh, negated in zip(probes[::2], probes[1::2], strict=True):
        assert torch.equal(negated["x"], -fresh["x"]) and torch.equal(negated["k"], fresh["k"])
        assert int(fresh["k"].min()) >= 2 and int(fresh["k"].max()) <= 5
    assert any(bool((p["x"] < 0).any()) for p in probes)
