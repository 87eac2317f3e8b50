"""Compression benchmark: fp32 vs each compression of a digits classifier, in one run.

Trains a small MLP on scikit-learn's bundled digits data set (no download) in seconds,
packages it with `conch_runtime.package` (python format) as fp32 and with each compression,
and prints, against fp32: artifact size ratio (what ships, and what ModelVersion.sizeBytes
records), model-file size ratio, accuracy delta in points on the held-out split, and the
1-thread latency ratio of one sample through the packaged model file (the exported program
the Python backend runs). Ratios, not absolute times, are comparable on a shared machine.

Target (the issue): int8 at least 3.5x smaller with at most 0.5 points of accuracy lost.

    .venv/bin/python benchmarks/compression.py [--hidden 1024] [--epochs 30]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from conch_runtime.compress import CompressionOptions, DistillOptions
from conch_runtime.data import Dataset
from conch_runtime.export import load_saved
from conch_runtime.package import PackageResult, package

TARGET_RATIO, TARGET_DROP = 3.5, 0.5


class MLP(nn.Module):
    def __init__(self, hidden: int, layers: int = 2) -> None:
        super().__init__()
        sizes = [64] + [hidden] * layers
        blocks: list[nn.Module] = []
        for a, b in itertools.pairwise(sizes):
            blocks += [nn.Linear(a, b), nn.ReLU()]
        self.body = nn.Sequential(*blocks, nn.Linear(sizes[-1], 10))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.body(pixels)


STUDENT_HIDDEN = 128


def student() -> nn.Module:
    """Factory of the distillation student (referenced as `compression:student`)."""
    torch.manual_seed(1)
    return MLP(STUDENT_HIDDEN, layers=1)


def data() -> tuple[Dataset, Dataset]:
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target, dtype=torch.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    return (
        Dataset({"pixels": xtr}, ytr),
        Dataset({"pixels": xte}, yte),
    )


def train(model: nn.Module, train_set: Dataset, epochs: int) -> nn.Module:
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = train_set.inputs["pixels"], train_set.labels
    assert y is not None
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for start in range(0, len(x), 64):
            idx = order[start : start + 64]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
    return model.eval()


def latency_us(result: PackageResult, sample: torch.Tensor, runs: int = 300) -> float:
    """Median of `runs` single-sample calls of the packaged model file, on one thread."""
    model_file = next((result.repository).glob("*/1/model.pt*"))
    run = load_saved(model_file)
    for _ in range(30):
        run(sample)
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        run(sample)
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1e6


@dataclass
class Row:
    name: str
    result: PackageResult
    latency: float


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=1024, help="width of the 2 hidden layers")
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()

    train_set, test_set = data()
    began = time.perf_counter()
    model = train(MLP(args.hidden), train_set, args.epochs)
    trained_in = time.perf_counter() - began
    print(
        f"digits: {len(train_set)} train / {len(test_set)} test samples; "
        f"MLP 64-{args.hidden}-{args.hidden}-10 trained in {trained_in:.1f}s "
        f"({args.epochs} epochs, {torch.get_num_threads()} threads)"
    )
    distill = DistillOptions(
        student="compression:student",
        data=train_set,
        epochs=60,
        learning_rate=3e-3,
        teacher_version="digits-fp32",
        search_path=(Path(__file__).resolve().parent,),
    )
    variants = {
        "fp32": CompressionOptions(),
        "int8": CompressionOptions(int8=True),
        "pruned 50%": CompressionOptions(sparsity=0.5),
        "pruned 50% + int8": CompressionOptions(sparsity=0.5, int8=True),
        "fp16": CompressionOptions(fp16=True),
        f"distilled (64-{STUDENT_HIDDEN}-10)": CompressionOptions(distill=distill),
        "distilled + int8": CompressionOptions(distill=distill, int8=True),
    }
    sample = test_set.inputs["pixels"][:1]
    threads = torch.get_num_threads()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as scratch:
        for i, (name, options) in enumerate(variants.items()):
            result = package(
                model,
                Path(scratch) / str(i),
                name="digits",
                version=str(i),
                example={"pixels": test_set.inputs["pixels"][:8]},
                output_names=["logits"],
                validation=test_set,
                compression=options,
                baseline_version="digits-fp32",
            )
            torch.set_num_threads(1)
            rows.append(Row(name, result, latency_us(result, sample)))
            torch.set_num_threads(threads)

    base = rows[0]
    base_accuracy = base.result.compression["accuracy"]
    header = (
        f"{'variant':<24}{'artifact B':>11}{'size x':>8}{'file x':>8}"
        f"{'accuracy':>10}{'delta pt':>9}{'1-thr us':>10}{'latency x':>11}"
    )
    print()
    print(header)
    print("-" * len(header))
    for row in rows:
        report = row.result.compression
        size_ratio = base.result.size_bytes / row.result.size_bytes
        file_ratio = base.result.compression["modelBytes"] / report["modelBytes"]
        delta = (report["accuracy"] - base_accuracy) * 100
        print(
            f"{row.name:<24}{row.result.size_bytes:>11}{size_ratio:>8.2f}{file_ratio:>8.2f}"
            f"{report['accuracy']:>10.4f}{delta:>+9.2f}{row.latency:>10.0f}"
            f"{row.latency / base.latency:>11.2f}"
        )
    print()
    print(
        "size x: fp32 artifact (tar.gz) / this artifact; file x: the same for the model file; "
        "latency x: this / fp32 (lower is faster)"
    )
    int8 = next(r for r in rows if r.name == "int8")
    ratio = base.result.size_bytes / int8.result.size_bytes
    drop = (base_accuracy - int8.result.compression["accuracy"]) * 100
    met = ratio >= TARGET_RATIO and drop <= TARGET_DROP
    print(
        f"target: int8 >= {TARGET_RATIO}x smaller with <= {TARGET_DROP} points lost: "
        f"{ratio:.2f}x, {drop:+.2f} points lost -> {'MET' if met else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
