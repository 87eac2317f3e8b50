"""The compression report as data: what reaches conch.json and the ModelVersion, and the
plain warnings a variant gets when it does not pay on its target."""

from __future__ import annotations

from dataclasses import replace

import pytest

from conch_runtime.report import (
    CompressionReport,
    Latency,
    OutputError,
    Transform,
    compression_warnings,
)

LATENCY = Latency(threads=1, max_batch=64, batch1_ms=0.1, max_batch_ms=1.0)
REPORT = CompressionReport(
    transform=Transform(quantization="int8-static", quantizer="q", calibration_samples=10),
    baseline_version="digits-fp32",
    model_bytes=100,
    artifact_bytes=50,
    baseline_model_bytes=400,
    baseline_artifact_bytes=200,
    baseline_accuracy=0.98,
    accuracy=0.975,
    accuracy_metric="top1",
    validation_samples=540,
    output_errors={"logits": OutputError(0.5, 0.01)},
    latency=replace(LATENCY, baseline_batch1_ms=0.4, baseline_max_batch_ms=8.0),
)


def test_to_dict_is_camel_case_and_leaves_out_what_is_absent() -> None:
    data = REPORT.to_dict()
    assert data["quantization"] == "int8-static" and data["calibrationSamples"] == 10
    assert data["sizeRatio"] == 4.0 and data["artifactSizeRatio"] == 4.0
    assert data["accuracyDelta"] == pytest.approx(-0.005)
    assert data["outputErrors"] == {"logits": {"maxAbsError": 0.5, "meanAbsError": 0.01}}
    assert data["latency"] == {
        "device": "cpu",
        "threads": 1,
        "batch1Ms": 0.1,
        "maxBatch": 64,
        "maxBatchMs": 1.0,
        "baselineBatch1Ms": 0.4,
        "baselineMaxBatchMs": 8.0,
    }
    assert not {"fp16", "sparsity", "distillation", "warnings"} & set(data)


def test_to_crd_holds_only_the_crd_fields_with_fractions_clipped() -> None:
    over = replace(REPORT, accuracy=1.0000001, transform=Transform(sparsity=0.5000004))
    block = over.to_crd()
    assert set(block) == {
        "quantization",
        "sparsity",
        "baselineVersion",
        "baselineAccuracy",
        "accuracy",
        "accuracyMetric",
        "sizeBytes",
        "latency",
    }
    assert block["accuracy"] == 1.0 and block["sparsity"] == 0.5 and block["sizeBytes"] == 50


@pytest.mark.parametrize(
    ("report", "device", "said"),
    [
        (REPORT, "cpu", []),
        (
            replace(REPORT, transform=Transform(fp16=True), latency=None),
            "cpu",
            ["fp16 is for GPUs"],
        ),
        (replace(REPORT, transform=Transform(fp16=True), latency=None), "gpu", []),
        (
            replace(REPORT, transform=Transform(sparsity=0.5), model_bytes=399),
            "cpu",
            ["pruning zeroes weights in place (unstructured)"],
        ),
        (  # pruned and quantized: smaller, and the int8 path is judged by its latency
            replace(REPORT, transform=Transform(sparsity=0.5, quantization="int8-static")),
            "cpu",
            [],
        ),
        (
            replace(
                REPORT, latency=replace(LATENCY, baseline_batch1_ms=0.05, baseline_max_batch_ms=2)
            ),
            "cpu",
            ["slower than the uncompressed model on 1 cpu thread(s): 2.00x the time at batch 1"],
        ),
    ],
)
def test_warnings_say_what_a_variant_does_not_buy(
    report: CompressionReport, device: str, said: list[str]
) -> None:
    warnings = compression_warnings(report, device)  # type: ignore[arg-type]
    assert len(warnings) == len(said), warnings
    for warning, start in zip(warnings, said, strict=True):
        assert warning.startswith(start), warning


def test_speedup_needs_a_baseline() -> None:
    assert LATENCY.speedup() is None
    assert REPORT.latency is not None and REPORT.latency.speedup() == (4.0, 8.0)
