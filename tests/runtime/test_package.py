"""`package` without a server: layout, config.pbtxt through the protobuf, manifest digests,
the artifact through `pull`, the ModelVersion through the CRD schema, inputs of every kind,
what each compression did, and the refusals."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
import torch
import yaml
from tritonclient.grpc import model_config_pb2 as mc

from conch_runtime.compress import INT8_QUANTIZER, CompressionOptions, DistillOptions
from conch_runtime.data import Dataset
from conch_runtime.export import Format, load_saved
from conch_runtime.manifest import MANIFEST, Manifest, file_digests, sha256_file
from conch_runtime.models import quiet_deprecations
from conch_runtime.package import PackageRequest, PackageResult, package
from conch_runtime.pull import PullOptions, pull
from conch_runtime.report import Distillation
from conch_runtime.repository import ServingOptions, config_signature, read_config
from conch_runtime.signature import Signature, TensorSpec
from conch_runtime.sources import SourceConfig
from conch_runtime.tool_errors import (
    ExportFailed,
    InvalidData,
    InvalidModel,
    InvalidRepository,
    InvalidSignature,
    UnsupportedCompression,
)
from conch_runtime.validate import validate
from tests.runtime.helpers import read_tree
from tests.runtime.packaging import (
    FEATURES,
    OUTPUT_NAMES,
    branchy,
    example,
    task,
    teacher,
    trained_teacher,
    validation,
)

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "serving.conch.dev_modelversions.yaml"


def build(out: Path, compression: CompressionOptions | None = None, **kwargs: Any) -> PackageResult:
    arguments: dict[str, Any] = {
        "name": "mlp",
        "version": "1.0.0",
        "example": example(),
        "output_names": OUTPUT_NAMES,
        "validation": validation(),
        "compression": compression,
    }
    arguments.update(kwargs)
    model = arguments.pop("model", trained_teacher())
    return package(model, out, PackageRequest(**arguments))


@pytest.fixture(scope="module")
def fp32(tmp_path_factory: pytest.TempPathFactory) -> PackageResult:
    return build(
        tmp_path_factory.mktemp("fp32") / "pkg",
        serving=ServingOptions(instances=2, max_queue_delay_us=500, preferred_batch_sizes=(16,)),
        baseline_version="mlp-1.0.0",
    )


@pytest.fixture(scope="module")
def int8_pruned(tmp_path_factory: pytest.TempPathFactory) -> PackageResult:
    return build(
        tmp_path_factory.mktemp("int8") / "pkg",
        CompressionOptions(int8=True, sparsity=0.5),
        baseline_version="mlp-1.0.0",
    )


def crd_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    return dict(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


# -- layout, config, manifest, artifact ---------------------------------------------------------


def test_layout(fp32: PackageResult) -> None:
    files = sorted(file_digests(fp32.directory))
    assert files == [
        "mlp-1.0.0.tar.gz",
        "modelversion.yaml",
        "repository/mlp/1/model.pt2",
        "repository/mlp/1/model.py",
        "repository/mlp/config.pbtxt",
        "validation/expected.npz",
        "validation/inputs.npz",
        "validation/original.npz",
    ]
    assert (fp32.directory / MANIFEST).is_file()
    assert fp32.artifact == fp32.directory / "mlp-1.0.0.tar.gz"
    assert [p.name for p in fp32.directory.parent.iterdir()] == ["pkg"]  # no staging left


def test_config_parses_with_the_model_config_protobuf(fp32: PackageResult) -> None:
    config = read_config(fp32.repository / "mlp" / "config.pbtxt")
    assert isinstance(config, mc.ModelConfig)
    assert (config.name, config.backend, config.max_batch_size) == ("mlp", "python", 64)
    assert config.parameters["model_file"].string_value == "model.pt2"
    assert [(i.name, mc.DataType.Name(i.data_type), list(i.dims)) for i in config.input] == [
        ("features", "TYPE_FP32", [16]),
        ("category", "TYPE_INT64", [1]),
    ]
    assert [(o.name, mc.DataType.Name(o.data_type), list(o.dims)) for o in config.output] == [
        ("logits", "TYPE_FP32", [5]),
        ("label", "TYPE_INT64", [1]),
    ]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert list(config.dynamic_batching.preferred_batch_size) == [16]
    [group] = config.instance_group
    assert (group.kind, group.count) == (mc.ModelInstanceGroup.KIND_CPU, 2)
    assert config_signature(config) == fp32.signature


def test_gpu_instances_are_kind_gpu(tmp_path: Path) -> None:
    result = build(tmp_path / "gpu", serving=ServingOptions(device="gpu"), validation=None)
    [group] = read_config(result.repository / "mlp" / "config.pbtxt").instance_group
    assert group.kind == mc.ModelInstanceGroup.KIND_GPU


def test_a_malformed_config_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "config.pbtxt"
    bad.write_text('name: "mlp"\nmax_batch_sizes: 4\n')
    with pytest.raises(InvalidRepository, match="not a valid Triton model config"):
        read_config(bad)


def test_manifest_lists_every_file_with_its_digest(fp32: PackageResult) -> None:
    data = json.loads(fp32.manifest.read_text())
    assert data["files"] == file_digests(fp32.directory)
    assert data["artifact"] == {
        "file": "mlp-1.0.0.tar.gz",
        "sha256": sha256_file(fp32.artifact),
        "sizeBytes": fp32.artifact.stat().st_size,
    }
    assert data["modelFile"] == "mlp/1/model.pt2"
    assert Signature.from_dict(data["signature"]) == fp32.signature
    assert data["tools"]["torch"] == torch.__version__.split("+")[0] or data["tools"]["torch"]
    report = data["compression"]
    assert report["quantization"] == "none"
    assert report["accuracy"] == report["baselineAccuracy"] > 0.8
    assert report["outputErrors"]["logits"]["maxAbsError"] == 0


def test_artifact_is_plain_and_round_trips_through_pull(
    fp32: PackageResult, tmp_path: Path
) -> None:
    with tarfile.open(fp32.artifact) as tar:
        members = tar.getmembers()
    assert all(m.isreg() or m.isdir() for m in members)
    assert all(m.mtime == 0 and m.uid == 0 and not m.name.startswith("/") for m in members)
    dest = tmp_path / "models" / "repo"
    pulled = pull(fp32.uri, fp32.sha256, dest, PullOptions(config=SourceConfig(allow_file=True)))
    assert pulled.files == 3  # config.pbtxt, model.py, model.pt2
    assert read_tree(dest) == read_tree(fp32.repository)  # byte for byte


def test_artifact_bytes_depend_only_on_the_files(fp32: PackageResult, tmp_path: Path) -> None:
    from conch_runtime.manifest import write_artifact

    again = write_artifact(fp32.repository, tmp_path / "again.tar.gz")
    assert again == (fp32.sha256, fp32.size_bytes)


def test_custom_uri_goes_into_the_modelversion(tmp_path: Path) -> None:
    uri = "s3://models-bucket/mlp/1.0.0/mlp.tar.gz"
    result = build(tmp_path / "s3", uri=uri)
    obj = yaml.safe_load(result.modelversion.read_text())
    assert obj["spec"]["source"] == {"uri": uri, "sha256": result.sha256}


# -- the ModelVersion -------------------------------------------------------------------------


def test_modelversion_validates_against_the_crd_schema(int8_pruned: PackageResult) -> None:
    obj = yaml.safe_load(int8_pruned.modelversion.read_text())
    jsonschema.validate(obj, crd_schema())  # CEL rules: see tests/integration
    spec = obj["spec"]
    assert obj["apiVersion"] == "serving.conch.dev/v1alpha1" and obj["kind"] == "ModelVersion"
    assert obj["metadata"]["name"] == "mlp-1.0.0"
    assert (spec["model"], spec["version"], spec["format"]) == ("mlp", "1.0.0", "python")
    assert spec["source"] == {"uri": int8_pruned.artifact.as_uri(), "sha256": int8_pruned.sha256}
    assert spec["signature"] == {
        "inputs": [
            {"name": "features", "dataType": "TYPE_FP32", "dims": [16]},
            {"name": "category", "dataType": "TYPE_INT64", "dims": [1]},
        ],
        "outputs": [
            {"name": "logits", "dataType": "TYPE_FP32", "dims": [5]},
            {"name": "label", "dataType": "TYPE_INT64", "dims": [1]},
        ],
        "maxBatchSize": 64,
    }
    compression = spec["compression"]
    assert set(compression) == {
        "quantization",
        "sparsity",
        "baselineVersion",
        "baselineAccuracy",
        "accuracy",
        "accuracyMetric",
        "sizeBytes",
        "latency",
    }
    assert compression["accuracyMetric"] == "top1"  # the validation data has labels
    assert compression["quantization"] == "int8-static"
    latency = compression["latency"]
    assert latency["device"] == "cpu" and latency["threads"] == 1 and latency["maxBatch"] == 64
    assert latency["batch1Ms"] > 0 and latency["baselineMaxBatchMs"] > 0
    assert compression["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert compression["sizeBytes"] == int8_pruned.size_bytes
    assert compression["baselineVersion"] == "mlp-1.0.0"
    # The round trip: what the schema accepted is what the manifest recorded.
    manifest = Manifest.read(int8_pruned.directory)
    assert manifest.artifact_sha256 == spec["source"]["sha256"]
    assert manifest.signature == spec["signature"]
    assert manifest.compression["accuracy"] == pytest.approx(compression["accuracy"], abs=1e-6)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("signature", "inputs", 0, "dataType"), "FLOAT32"),
        (("compression", "quantization"), "int4"),
        (("compression", "sparsity"), 1.5),
        (("signature", "maxBatchSize"), -1),
        (("format",), "tensorrt"),
    ],
)
def test_the_schema_check_has_teeth(
    int8_pruned: PackageResult, path: tuple[str | int, ...], value: object
) -> None:
    obj = yaml.safe_load(int8_pruned.modelversion.read_text())
    target: Any = obj["spec"]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(obj, crd_schema())


# -- compression ------------------------------------------------------------------------------


def _state(result: PackageResult) -> dict[str, torch.Tensor]:
    program = torch.export.load(result.repository / "mlp" / "1" / "model.pt2")
    return dict(program.state_dict)


def test_pruning_is_permanent_and_measured(int8_pruned: PackageResult, tmp_path: Path) -> None:
    report = int8_pruned.compression
    assert (
        report.transform.sparsity == pytest.approx(0.5, abs=0.01)
        and report.transform.target_sparsity == 0.5
    )
    pruned = build(tmp_path / "pruned", CompressionOptions(sparsity=0.8))
    weights = {k: v for k, v in _state(pruned).items() if k.endswith("weight") and "embed" not in k}
    assert sorted(weights) == ["fc1.weight", "fc2.weight", "out.weight"]
    for name, tensor in weights.items():
        assert float((tensor == 0).float().mean()) == pytest.approx(0.8, abs=0.01), name
    embedding = _state(pruned)["embed.weight"]
    assert int((embedding == 0).sum()) == 0  # only Linear/Conv weights are pruned
    assert not any("mask" in k or "orig" in k for k in _state(pruned))


def test_int8_shrinks_the_artifact_and_keeps_accuracy(int8_pruned: PackageResult) -> None:
    report = int8_pruned.compression
    assert report.transform.quantizer == INT8_QUANTIZER
    assert report.transform.calibration_samples == 256  # the validation data by default
    assert report.artifact_size_ratio is not None and report.artifact_size_ratio > 2.5, report
    assert report.accuracy >= report.baseline_accuracy - 0.05, report
    assert report.output_errors["logits"].max_abs_error > 0  # pruned, not fine-tuned


def test_int8_is_static_torchscript_and_answers_alike_in_any_batch(
    int8_pruned: PackageResult,
) -> None:
    """Calibrated scales: a sample's answer does not depend on what it is batched with."""
    config = read_config(int8_pruned.repository / "mlp" / "config.pbtxt")
    assert config.parameters["model_file"].string_value == "model.pt"
    model = load_saved(int8_pruned.repository / "mlp" / "1" / "model.pt")
    data = Dataset.of(validation())
    features, category = data.inputs["features"], data.inputs["category"]
    whole = model(features[:64], category[:64])[0]
    for size in (1, 7):
        alone = model(features[:size], category[:size])[0]
        assert torch.equal(alone, whole[:size]), size


def test_int8_for_the_torchscript_format(tmp_path: Path) -> None:
    result = build(tmp_path / "ts", CompressionOptions(int8=True), format="torchscript")
    config = read_config(result.repository / "mlp" / "config.pbtxt")
    assert config.platform == "pytorch_libtorch"
    assert result.compression.transform.quantization == "int8-static"
    assert result.compression.accuracy >= result.compression.baseline_accuracy - 0.05


def test_int8_calibrates_on_the_data_given(tmp_path: Path) -> None:
    calibration = Dataset.of(task(96, seed=21))
    result = build(tmp_path / "cal", CompressionOptions(int8=True, calibration=calibration))
    assert result.compression.transform.calibration_samples == 96


def test_latency_is_measured_for_every_package(fp32: PackageResult) -> None:
    latency = fp32.compression.latency
    assert latency is not None and (latency.threads, latency.max_batch) == (1, 64)
    assert latency.batch1_ms > 0 and latency.max_batch_ms > 0
    assert latency.speedup() is None  # nothing compressed: no baseline to compare with
    spec = yaml.safe_load(fp32.modelversion.read_text())["spec"]
    assert spec["compression"]["latency"]["batch1Ms"] == round(latency.batch1_ms, 4)


def test_unstructured_pruning_says_it_buys_neither_size_nor_speed(tmp_path: Path) -> None:
    result = build(tmp_path / "pruned", CompressionOptions(sparsity=0.5))
    assert any("unstructured" in w for w in result.compression.warnings), result.compression
    manifest = Manifest.read(result.directory)
    assert manifest.compression["warnings"] == list(result.compression.warnings)


def test_fp16_halves_the_weights_and_keeps_the_interface(tmp_path: Path) -> None:
    result = build(tmp_path / "fp16", CompressionOptions(fp16=True))
    weights = [t for k, t in _state(result).items() if k.endswith("fc1.weight")]
    assert weights and weights[0].dtype == torch.float16
    assert result.signature.inputs[0].data_type == "TYPE_FP32"  # clients see no change
    report = result.compression
    assert report.transform.fp16 is True
    assert report.size_ratio is not None and report.size_ratio > 1.3  # the graph is not halved
    assert any(w.startswith("fp16 is for GPUs") for w in report.warnings)  # a CPU target
    assert report.output_errors["logits"].max_abs_error < 0.05
    expected = np.load(result.directory / "validation" / "expected.npz")
    assert expected["logits"].dtype == np.float32


def test_distillation_trains_a_smaller_student(tmp_path: Path) -> None:
    options = DistillOptions(
        student="tests.runtime.packaging:student",
        data=Dataset.of(task(2048, seed=11)),
        epochs=15,
        teacher_version="mlp-teacher-1.0.0",
    )
    result = build(tmp_path / "student", CompressionOptions(distill=options))
    report = result.compression
    assert report.transform.distilled_from == "mlp-teacher-1.0.0"
    assert report.transform.distillation == Distillation(15, 2.0, 0.7, 2048)
    assert report.size_ratio is not None and report.size_ratio > 3
    assert report.accuracy >= report.baseline_accuracy - 0.1, report
    spec = yaml.safe_load(result.modelversion.read_text())["spec"]
    assert spec["compression"]["distilledFrom"] == "mlp-teacher-1.0.0"


# -- inputs of every kind ---------------------------------------------------------------------


def test_factory_and_state_dict(tmp_path: Path) -> None:
    weights = tmp_path / "teacher.pt"
    torch.save(trained_teacher().state_dict(), weights)
    result = build(tmp_path / "pkg", model="tests.runtime.packaging:teacher", weights=weights)
    assert result.compression.accuracy == pytest.approx(
        build(tmp_path / "ref").compression.accuracy
    )


def test_exported_program_input(tmp_path: Path) -> None:
    batch = torch.export.Dim("batch")
    program = torch.export.export(
        trained_teacher(), tuple(example().values()), dynamic_shapes=({0: batch}, {0: batch})
    )
    path = tmp_path / "teacher.pt2"
    torch.export.save(program, path)
    result = build(tmp_path / "pkg", CompressionOptions(sparsity=0.25), model=str(path))
    assert result.compression.transform.sparsity == pytest.approx(0.25, abs=0.01)
    with pytest.raises(UnsupportedCompression, match="module:factory"):
        build(tmp_path / "int8", CompressionOptions(int8=True), model=str(path))


def test_exported_program_with_a_static_batch_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "static.pt2"
    torch.export.save(torch.export.export(trained_teacher(), tuple(example().values())), path)
    with pytest.raises(InvalidModel, match="exported with a dynamic batch"):
        build(tmp_path / "pkg", model=str(path))


def test_torchscript_input_stays_torchscript(tmp_path: Path) -> None:
    path = tmp_path / "teacher.ts"
    with quiet_deprecations():
        torch.jit.save(torch.jit.trace(trained_teacher(), tuple(example().values())), str(path))  # type: ignore[no-untyped-call]
    result = build(tmp_path / "pkg", model=str(path))
    config = read_config(result.repository / "mlp" / "config.pbtxt")
    assert config.parameters["model_file"].string_value == "model.pt"
    assert result.compression.output_errors["logits"].max_abs_error == 0


def test_signature_given_instead_of_inferred(tmp_path: Path) -> None:
    signature = Signature(
        (TensorSpec("features", "TYPE_FP32", (16,)), TensorSpec("category", "TYPE_INT64", (1,))),
        (TensorSpec("scores", "TYPE_FP32", (5,)), TensorSpec("best", "TYPE_INT64", (1,))),
        max_batch_size=8,
    )
    result = build(tmp_path / "pkg", signature=signature, example=None, validation=None)
    assert result.signature == signature
    inputs = np.load(result.directory / "validation" / "inputs.npz")
    assert inputs["features"].shape == (64, 16) and set(np.unique(inputs["category"])) <= {0, 1}
    assert read_config(result.repository / "mlp" / "config.pbtxt").max_batch_size == 8


# -- refusals ---------------------------------------------------------------------------------


def test_refusals(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedCompression, match="exclude each other"):
        CompressionOptions(int8=True, fp16=True)
    with pytest.raises(UnsupportedCompression, match="sparsity"):
        CompressionOptions(sparsity=1.0)
    with pytest.raises(UnsupportedCompression, match="do not run on GPUs"):
        build(tmp_path / "a", CompressionOptions(int8=True), serving=ServingOptions(device="gpu"))
    with pytest.raises(UnsupportedCompression, match="depend on the requests batched with it"):
        build(tmp_path / "a", CompressionOptions(int8=True), format="onnx")
    with pytest.raises(InvalidSignature, match="DNS label"):
        build(tmp_path / "b", name="My_Model")
    with pytest.raises(InvalidSignature, match="returns 2 outputs, 1 named"):
        build(tmp_path / "c", output_names=["logits"])
    with pytest.raises(InvalidModel, match="no such model file"):
        build(tmp_path / "d", model=str(tmp_path / "absent.pt2"))
    with pytest.raises(InvalidModel, match="cannot import"):
        build(tmp_path / "e", model="tests.runtime.nowhere:factory")
    bad = dict(validation())
    bad["features"] = bad["features"][:, :8]
    with pytest.raises(InvalidData, match="per-sample shape"):
        build(tmp_path / "f", validation=bad)
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep").write_text("x")
    with pytest.raises(InvalidRepository, match="not empty"):
        build(occupied)
    assert [p.name for p in occupied.iterdir()] == ["keep"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["occupied"]  # nothing half-written


class Pool(torch.nn.Module):
    """Variable-length sequences: mean over the tokens, then a Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(8, 3)

    def forward(self, tokens: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return self.fc(tokens.mean(dim=1)) * weight


def test_variable_dims_are_exported_dynamic(tmp_path: Path) -> None:
    example = {"tokens": torch.randn(4, 6, 8), "weight": torch.rand(4, 1, dtype=torch.float64)}
    result = package(
        Pool().eval(),
        tmp_path / "pool",
        PackageRequest(
            name="pool",
            version="1",
            example=example,
            output_names=["scores"],
            dynamic_axes={"tokens": [0]},
        ),
    )
    assert result.signature.inputs[0].dims == (-1, 8)
    assert result.signature.inputs[1].data_type == "TYPE_FP64"
    assert result.signature.outputs[0].data_type == "TYPE_FP64"
    config = read_config(result.repository / "pool" / "config.pbtxt")
    assert list(config.input[0].dims) == [-1, 8]
    program = torch.export.load(result.repository / "pool" / "1" / "model.pt2").module()
    for length in (3, 11):
        out = program(torch.randn(2, length, 8), torch.ones(2, 1, dtype=torch.float64))
        assert out.shape == (2, 3)


# -- what is packaged behaves like the original -----------------------------------------------


def test_torchscript_keeps_data_dependent_control_flow(tmp_path: Path) -> None:
    """A trace of an all-positive example would freeze the fast path: the package would pass
    validate on those 4 samples and be wrong on a batch of 100 with negative features."""
    positive = task(4, seed=5)["features"].abs()
    result = package(
        "tests.runtime.packaging:branchy",
        tmp_path / "pkg",
        PackageRequest(
            name="branchy",
            version="1",
            format="torchscript",
            example={"features": positive},
            output_names=["scores"],
            validation={"features": positive},
            max_batch_size=128,
        ),
    )
    assert validate(result.directory).passed
    with quiet_deprecations():
        program = torch.jit.load(str(result.repository / "branchy" / "1" / "model.pt"))  # type: ignore[no-untyped-call]
    mixed = task(100, seed=6)["features"]
    model = branchy().eval()
    with torch.no_grad(), quiet_deprecations(), pytest.warns(torch.jit.TracerWarning):  # type: ignore[attr-defined]
        want = model(mixed)
        assert torch.allclose(program(mixed), want, atol=1e-6)
        frozen = torch.jit.trace(model, (positive,))  # type: ignore[no-untyped-call]
        assert not torch.allclose(frozen(mixed), want)  # what tracing would have shipped


@pytest.mark.parametrize("format", ["python", "onnx"])
def test_torch_export_formats_refuse_data_dependent_branches_saying_what_to_do(
    format: Format, tmp_path: Path
) -> None:
    with pytest.raises(ExportFailed) as caught:
        package(
            "tests.runtime.packaging:branchy",
            tmp_path / "pkg",
            PackageRequest(
                name="branchy",
                version="1",
                format=format,
                example={"features": task(4, seed=5)["features"].abs()},
                output_names=["scores"],
            ),
        )
    message = caught.value.message
    assert message.startswith(f"exporting for the {format} format failed: the model branches")
    assert "torch.where or torch.cond, or use --format torchscript" in message
    assert len(message) < 600 and "\n" not in message
    assert list(tmp_path.iterdir()) == []


def test_a_trace_that_differs_from_the_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExportFailed) as caught:
        package(
            "tests.runtime.packaging:unscriptable_branchy",
            tmp_path / "pkg",
            PackageRequest(
                name="branchy",
                version="1",
                format="torchscript",
                example={"features": task(4, seed=5)["features"].abs()},
                output_names=["scores"],
            ),
        )
    message = caught.value.message
    assert "differs from the model on a batch of" in message
    assert "data-dependent control flow" in message
    assert "use --format python or onnx, or make the model scriptable" in message
    assert list(tmp_path.iterdir()) == []  # nothing half-written


class Named(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(FEATURES, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.fc(x)
        return y, torch.relu(y)


def test_onnx_output_names_that_clash_with_internal_names_are_resolved(tmp_path: Path) -> None:
    """`fc.weight` is also the name of the Linear's weight inside the ONNX graph: exported as
    is, the name is defined twice and onnxruntime refuses the file."""
    import onnx

    torch.manual_seed(0)
    model = Named().eval()
    result = package(
        model,
        tmp_path / "pkg",
        PackageRequest(
            name="named",
            version="1",
            format="onnx",
            example={"x": torch.randn(4, FEATURES)},
            output_names=["fc.weight", "fc.bias"],
        ),
    )
    graph = onnx.load(str(result.repository / "named" / "1" / "model.onnx")).graph
    assert [o.name for o in graph.output] == ["fc.weight", "fc.bias"]
    names = [i.name for i in graph.initializer] + [o for n in graph.node for o in n.output]
    assert len(names) == len(set(names))  # every name defined once
    report = validate(result.directory)
    assert report.passed, report
    assert all(c.max_abs_error_vs_original is not None for c in report.outputs)
    assert max(c.max_abs_error_vs_original or 0.0 for c in report.outputs) < 1e-5


def test_onnx_from_a_torchscript_file_says_what_to_do_in_plain_text(tmp_path: Path) -> None:
    path = tmp_path / "teacher.ts"
    with quiet_deprecations():
        torch.jit.save(torch.jit.trace(trained_teacher(), tuple(example().values())), str(path))  # type: ignore[no-untyped-call]
    with pytest.raises(ExportFailed) as caught:
        build(tmp_path / "pkg", model=str(path), format="onnx")
    message = caught.value.message
    assert "\x1b" not in message and "\n" not in message and len(message) < 400
    assert "give its module:factory with --weights, or an exported program (.pt2)" in message
    assert not (tmp_path / "pkg").exists()


def test_without_labels_accuracy_is_agreement_with_the_original(tmp_path: Path) -> None:
    """No labels: accuracy is how often the package's top-1 class is the original's, so the
    operator's accuracy gate sees what heavy pruning of a model did."""
    from conch.api.modelversion import ModelVersionSpec
    from conch.rollout.gate import accuracy_drop, refusal

    plain = build(tmp_path / "plain", validation=None)
    assert plain.compression.accuracy_metric == "top1-agreement-with-baseline"
    assert plain.compression.baseline_accuracy == plain.compression.accuracy == 1.0

    pruned = build(
        tmp_path / "pruned", CompressionOptions(sparsity=0.5), model=teacher(), validation=None
    )
    report = pruned.compression
    assert report.accuracy_metric == "top1-agreement-with-baseline"
    assert report.baseline_accuracy == 1.0 and report.accuracy < 0.9, report
    spec = ModelVersionSpec.model_validate(yaml.safe_load(pruned.modelversion.read_text())["spec"])
    assert spec.compression is not None
    assert spec.compression.accuracy_metric == "top1-agreement-with-baseline"
    drop = accuracy_drop(spec)
    assert drop is not None and drop > 0.1
    assert refusal(0.01, drop, "mlp-1.0.0") is not None
