"""`validate` on a REAL tritonserver (Python backend, 127.0.0.1): every compression passes,
wrong models fail, and the other formats are checked numerically with torch / onnxruntime.

One server (explicit model control, stopped by pid) serves all the packages of this module;
one test starts its own through `validate` itself.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from conch_runtime.compress import CompressionOptions, DistillOptions
from conch_runtime.data import Dataset
from conch_runtime.manifest import Manifest, file_digests
from conch_runtime.models import quiet_deprecations
from conch_runtime.package import PackageRequest, PackageResult, package
from conch_runtime.repository import read_config
from conch_runtime.tool_errors import ServerError
from conch_runtime.triton import TritonServer
from conch_runtime.validate import validate
from tests.runtime.packaging import (
    OUTPUT_NAMES,
    Shifted,
    example,
    task,
    trained_teacher,
    validation,
)

DISTILL = DistillOptions(
    student="tests.runtime.packaging:student",
    data=Dataset.of(task(2048, seed=11)),
    epochs=15,
    teacher_version="mlp-fp32",
)

# name -> (compression, bound on the served output's max abs error vs the packaged model)
VARIANTS: dict[str, tuple[CompressionOptions, float]] = {
    "fp32": (CompressionOptions(), 1e-4),
    "int8": (CompressionOptions(int8=True), 1e-4),
    "pruned": (CompressionOptions(sparsity=0.5), 1e-4),
    "distilled": (CompressionOptions(distill=DISTILL), 1e-4),
    "fp16": (CompressionOptions(fp16=True), 1e-2),
    "distilled-pruned-int8": (CompressionOptions(distill=DISTILL, sparsity=0.3, int8=True), 1e-4),
}


def build(out: Path, name: str, compression: CompressionOptions, **kwargs: Any) -> PackageResult:
    model = kwargs.pop("model", trained_teacher())
    return package(
        model,
        out,
        PackageRequest(
            name=name,
            version="1.0.0",
            example=example(),
            output_names=OUTPUT_NAMES,
            compression=compression,
            validation=validation(),
            baseline_version="mlp-fp32",
            **kwargs,
        ),
    )


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, PackageResult]:
    root = tmp_path_factory.mktemp("packages")
    built = {
        variant: build(root / variant, f"mlp-{variant}", compression)
        for variant, (compression, _) in VARIANTS.items()
    }
    # A TorchScript input keeps being TorchScript: model.py runs it with torch.jit.load.
    script = root / "teacher.ts"
    with quiet_deprecations():
        traced = torch.jit.trace(trained_teacher(), tuple(example().values()))  # type: ignore[no-untyped-call]
        torch.jit.save(traced, str(script))
    built["torchscript-input"] = build(
        root / "torchscript-input", "mlp-torchscript-input", CompressionOptions(), model=str(script)
    )
    return built


@pytest.fixture(scope="module")
def triton(packages: dict[str, PackageResult]) -> Iterator[TritonServer]:
    server = TritonServer([p.repository for p in packages.values()], explicit=True)
    with server:
        yield server
    assert server.process is None


@pytest.mark.parametrize("variant", [*sorted(VARIANTS), "torchscript-input"])
def test_every_compression_passes_on_a_real_triton(
    variant: str, packages: dict[str, PackageResult], triton: TritonServer
) -> None:
    result = packages[variant]
    report = validate(result.directory, server=triton)
    assert report.passed, report
    assert report.engine.startswith("tritonserver")
    assert report.samples == 256
    assert report.batch_sizes == (1, 3, 7, 15, 31, 63, 64)  # every sample at each size
    assert report.max_abs_error <= VARIANTS.get(variant, (None, 1e-4))[1]
    assert [c.name for c in report.outputs] == list(OUTPUT_NAMES)
    assert report.latency_ms_p50 is not None and report.latency_ms_p50 > 0
    assert triton.model_ready(f"mlp-{variant}")
    # What compression cost, measured against the original teacher, is reported too.
    logits = report.outputs[0]
    assert logits.max_abs_error_vs_original is not None
    if variant in ("fp32", "torchscript-input"):
        assert logits.max_abs_error_vs_original == 0
    accuracy = result.compression.accuracy
    assert accuracy >= result.compression.baseline_accuracy - 0.1, result.compression


def servers_for(path: Path) -> list[int]:
    """Pids of live processes whose command line names `path` (our tritonservers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(path) in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def test_validate_starts_and_stops_its_own_server(
    packages: dict[str, PackageResult], tmp_path: Path
) -> None:
    copy = Path(shutil.copytree(packages["int8"].directory, tmp_path / "int8"))
    report = validate(copy)
    assert report.passed and report.max_abs_error <= 1e-4, report
    assert report.server_startup_seconds is not None and report.server_startup_seconds < 120
    assert servers_for(copy) == []  # stopped by pid, stubs included


def test_a_model_that_does_not_load_is_a_server_error(
    packages: dict[str, PackageResult], tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(packages["fp32"].directory, broken)
    manifest = Manifest.read(broken)
    (broken / "repository" / manifest.model_file).write_bytes(b"not a model")
    manifest.files = file_digests(broken)
    manifest.write(broken)
    with pytest.raises(ServerError, match="exited with code") as caught:
        validate(broken)
    assert "failed to load 'mlp-fp32'" in caught.value.message  # the log's errors say why
    assert servers_for(broken) == []


def test_a_wrong_reference_fails(packages: dict[str, PackageResult], triton: TritonServer) -> None:
    report = validate(
        packages["fp32"].directory, server=triton, reference=Shifted(trained_teacher())
    )
    assert not report.passed
    assert report.max_abs_error >= 0.5
    assert not report.outputs[0].passed


def test_a_wrong_model_in_the_repository_fails_on_triton(
    packages: dict[str, PackageResult], tmp_path: Path
) -> None:
    """The model file is swapped for another model's and the manifest rewritten to match,
    so every digest checks out: only the numbers Triton serves can tell."""
    wrong = package(
        Shifted(trained_teacher()),
        tmp_path / "wrong",
        PackageRequest(
            name="mlp-fp32",
            version="1.0.0",
            example=example(),
            output_names=OUTPUT_NAMES,
        ),
    )
    forged = tmp_path / "forged"
    shutil.copytree(packages["fp32"].directory, forged)
    model_file = Manifest.read(forged).model_file
    shutil.copyfile(wrong.repository / model_file, forged / "repository" / model_file)
    manifest = Manifest.read(forged)
    manifest.files = file_digests(forged)
    manifest.write(forged)

    report = validate(forged)
    assert report.problems == ()
    assert report.engine.startswith("tritonserver")
    assert not report.passed
    assert report.max_abs_error >= 0.5
    assert not report.outputs[0].passed


def test_a_tampered_file_fails_before_anything_runs(
    packages: dict[str, PackageResult], tmp_path: Path
) -> None:
    copy = tmp_path / "tampered"
    shutil.copytree(packages["fp32"].directory, copy)
    model_py = copy / "repository" / "mlp-fp32" / "1" / "model.py"
    model_py.write_text(model_py.read_text() + "\n# edited\n")
    report = validate(copy)
    assert not report.passed
    assert report.engine == "none"
    assert any("repository/mlp-fp32/1/model.py: sha256" in p for p in report.problems)
    assert json.loads(json.dumps(report.to_dict()))["passed"] is False


OTHER_FORMATS = {
    # name -> (format, compression, bound on |packaged file - reference|)
    "torchscript": ("torchscript", CompressionOptions(), 1e-4),
    "torchscript-fp16-pruned": ("torchscript", CompressionOptions(fp16=True, sparsity=0.3), 1e-2),
    "onnx": ("onnx", CompressionOptions(), 1e-4),
    "onnx-fp16": ("onnx", CompressionOptions(fp16=True), 1e-2),
}


@pytest.mark.parametrize("variant", sorted(OTHER_FORMATS))
def test_other_formats_are_checked_numerically_and_say_so(variant: str, tmp_path: Path) -> None:
    format, compression, bound = OTHER_FORMATS[variant]
    result = build(tmp_path / variant, "mlp", compression, format=format)
    config = read_config(result.repository / "mlp" / "config.pbtxt")
    assert (
        config.platform == {"onnx": "onnxruntime_onnx", "torchscript": "pytorch_libtorch"}[format]
    )
    assert (
        config.default_model_filename == {"onnx": "model.onnx", "torchscript": "model.pt"}[format]
    )
    report = validate(result.directory)
    assert report.passed and report.max_abs_error <= bound, report
    assert report.engine.endswith("without Triton")
    assert any(f"no {format} backend" in note for note in report.notes)
    assert result.compression.accuracy >= result.compression.baseline_accuracy - 0.05
    wrong = validate(result.directory, reference=Shifted(trained_teacher()), atol=bound)
    assert not wrong.passed


class BatchCentred(torch.nn.Module):
    """Subtracts the batch mean: each sample's answer depends on the samples batched with
    it, which Triton's dynamic batcher chooses, so no served answer can be relied on."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores: torch.Tensor = self.fc(x - x.mean(dim=0, keepdim=True))
        return scores


def test_answers_that_depend_on_the_batch_fail_at_an_odd_batch_size(tmp_path: Path) -> None:
    torch.manual_seed(0)
    result = package(
        BatchCentred().eval(),
        tmp_path / "centred",
        PackageRequest(
            name="centred",
            version="1",
            format="torchscript",
            example={"x": torch.randn(8, 4)},
            output_names=["scores"],
            max_batch_size=16,
        ),
    )
    report = validate(result.directory)
    assert report.batch_sizes == (1, 3, 7, 15, 16)
    assert not report.passed
    [scores] = report.outputs
    assert not scores.passed and scores.worst_batch_size == 1 and scores.max_abs_error > 0.01
    assert report.max_abs_error == scores.max_abs_error
