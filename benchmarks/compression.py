"""Compression benchmark: fp32 vs each compression, for an MLP and a CNN, in one run.

Trains two small classifiers on scikit-learn's bundled digits data set (no download) in
seconds: a 64-1024-1024-10 MLP and the convolutional example model
(examples/models/digits_cnn.py). Packages each with `conch_runtime.package` (python format,
the one the sandbox's Triton serves) as fp32 and with each compression, int8 calibrated on
512 training samples, and prints against fp32: artifact size ratio (what ships, and what
ModelVersion.sizeBytes records), accuracy delta in points on the held-out split, and the
latency of the packaged model files at batch 1 and batch 64 on ONE thread, all files timed
in alternating rounds in this process (`conch_runtime.latency.measure`): ratios, not
absolute times, are comparable on a shared machine.

Targets (issue 15), per model: int8 >= 1.5x faster than fp32 at batch 1 and at batch 64,
<= 0.5 points of accuracy lost, >= 3.5x smaller; distilled + int8 faster than distilled fp32.

    .venv/bin/python benchmarks/compression.py [--models mlp,cnn] [--hidden 1024] [--epochs 30]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from conch_runtime.compress import CompressionOptions, DistillOptions
from conch_runtime.data import Dataset
from conch_runtime.export import load_saved
from conch_runtime.latency import measure
from conch_runtime.package import PackageRequest, PackageResult, package

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "examples" / "models"))
import digits_cnn  # noqa: E402

FASTER, TARGET_RATIO, TARGET_DROP, MAX_BATCH = 1.5, 3.5, 0.5, 64


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
    """Factory of the MLP's distillation student (referenced as `compression:student`)."""
    torch.manual_seed(1)
    return MLP(STUDENT_HIDDEN, layers=1)


def cnn_student() -> nn.Module:
    """Factory of the CNN's student: one narrow convolution (`compression:cnn_student`)."""
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


@dataclass(frozen=True)
class Subject:
    """One model under test: its data (input name and shape) and how to make it."""

    name: str
    input_name: str
    shape: tuple[int, ...]
    make: Callable[[], nn.Module]
    student: str
    student_label: str


def data(subject: Subject) -> tuple[Dataset, Dataset]:
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32).reshape(-1, *subject.shape) / 16.0
    y = torch.tensor(digits.target, dtype=torch.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    return Dataset({subject.input_name: xtr}, ytr), Dataset({subject.input_name: xte}, yte)


def train(model: nn.Module, train_set: Dataset, epochs: int) -> nn.Module:
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    [x] = train_set.inputs.values()
    y = train_set.labels
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


def variants(subject: Subject, train_set: Dataset) -> dict[str, CompressionOptions]:
    calibration = train_set.head(512)
    distill = DistillOptions(
        student=f"compression:{subject.student}",
        data=train_set,
        epochs=60,
        learning_rate=3e-3,
        teacher_version=f"digits-{subject.name}-fp32",
        search_path=(HERE,),
    )
    return {
        "fp32": CompressionOptions(),
        "int8": CompressionOptions(int8=True, calibration=calibration),
        "pruned 50%": CompressionOptions(sparsity=0.5),
        "pruned 50% + int8": CompressionOptions(sparsity=0.5, int8=True, calibration=calibration),
        "fp16": CompressionOptions(fp16=True),
        f"distilled ({subject.student_label})": CompressionOptions(distill=distill),
        "distilled + int8": CompressionOptions(distill=distill, int8=True, calibration=calibration),
    }


@dataclass
class Row:
    name: str
    result: PackageResult
    batch1_ms: float = 0.0
    batch_ms: float = 0.0


def run(subject: Subject, epochs: int, scratch: Path) -> list[str]:
    """Package, time and print one model's variants; the target lines it printed."""
    train_set, test_set = data(subject)
    began = time.perf_counter()
    model = train(subject.make(), train_set, epochs)
    print(
        f"\n== {subject.name}: {len(train_set)} train / {len(test_set)} test samples, trained "
        f"in {time.perf_counter() - began:.1f}s ({epochs} epochs)"
    )
    rows: list[Row] = []
    for i, (name, options) in enumerate(variants(subject, train_set).items()):
        result = package(
            model,
            scratch / f"{subject.name}-{i}",
            PackageRequest(
                name=f"digits-{subject.name}",
                version=str(i),
                example={subject.input_name: test_set.inputs[subject.input_name][:8]},
                output_names=["logits"],
                validation=test_set,
                compression=options,
                max_batch_size=MAX_BATCH,
                baseline_version=f"digits-{subject.name}-fp32",
            ),
        )
        rows.append(Row(name, result))
    files = {
        row.name: load_saved(next(row.result.repository.glob("*/1/model.pt*"))) for row in rows
    }
    times = measure(files, test_set, MAX_BATCH, thread_count=1, rounds=7)
    for row in rows:
        row.batch1_ms, row.batch_ms = times[row.name]
    print_table(rows)
    return targets(subject, rows)


def print_table(rows: list[Row]) -> None:
    base = rows[0]
    header = (
        f"{'variant':<26}{'artifact B':>11}{'size x':>8}{'accuracy':>10}{'delta pt':>9}"
        f"{'b1 ms':>9}{'b1 x':>7}{f'b{MAX_BATCH} ms':>9}{f'b{MAX_BATCH} x':>7}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        report = row.result.compression
        delta = (report.accuracy - base.result.compression.accuracy) * 100
        print(
            f"{row.name:<26}{row.result.size_bytes:>11}"
            f"{base.result.size_bytes / row.result.size_bytes:>8.2f}{report.accuracy:>10.4f}"
            f"{delta:>+9.2f}{row.batch1_ms:>9.3f}{base.batch1_ms / row.batch1_ms:>7.2f}"
            f"{row.batch_ms:>9.3f}{base.batch_ms / row.batch_ms:>7.2f}"
        )
    print(
        "size x: fp32 artifact / this artifact; b1 x, b64 x: fp32 time / this time (higher "
        "is faster); packaged model files, 1 thread, medians of alternating rounds"
    )


def targets(subject: Subject, rows: list[Row]) -> list[str]:
    by = {row.name: row for row in rows}
    fp32, int8 = by["fp32"], by["int8"]
    distilled = next(r for r in rows if r.name.startswith("distilled ("))
    distilled_int8 = by["distilled + int8"]
    one, most = fp32.batch1_ms / int8.batch1_ms, fp32.batch_ms / int8.batch_ms
    ratio = fp32.result.size_bytes / int8.result.size_bytes
    drop = (fp32.result.compression.accuracy - int8.result.compression.accuracy) * 100
    d_one = distilled.batch1_ms / distilled_int8.batch1_ms
    d_most = distilled.batch_ms / distilled_int8.batch_ms
    lines = [
        _verdict(
            f"{subject.name}: int8 >= {FASTER}x faster at batch 1 and {MAX_BATCH}",
            f"{one:.2f}x and {most:.2f}x",
            one >= FASTER and most >= FASTER,
        ),
        _verdict(
            f"{subject.name}: int8 <= {TARGET_DROP} points lost",
            f"{drop:+.2f} points lost",
            drop <= TARGET_DROP,
        ),
        _verdict(
            f"{subject.name}: int8 >= {TARGET_RATIO}x smaller",
            f"{ratio:.2f}x",
            ratio >= TARGET_RATIO,
        ),
        _verdict(
            f"{subject.name}: distilled + int8 faster than distilled fp32",
            f"{d_one:.2f}x at batch 1, {d_most:.2f}x at {MAX_BATCH}",
            d_one > 1 and d_most > 1,
        ),
    ]
    return lines


def _verdict(target: str, figures: str, met: bool) -> str:
    return f"target: {target}: {figures} -> {'MET' if met else 'MISSED'}"


SUBJECTS = {
    "mlp": lambda hidden: Subject(
        "mlp", "pixels", (64,), lambda: MLP(hidden), "student", f"64-{STUDENT_HIDDEN}-10"
    ),
    "cnn": lambda hidden: Subject(
        "cnn", "image", (1, 8, 8), digits_cnn.build, "cnn_student", "conv16-64-10"
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--models", default="mlp,cnn", help="comma-separated: mlp, cnn")
    parser.add_argument("--hidden", type=int, default=1024, help="width of the MLP's 2 layers")
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(1)
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        for key in args.models.split(","):
            lines += run(SUBJECTS[key](args.hidden), args.epochs, Path(scratch))
    print()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
