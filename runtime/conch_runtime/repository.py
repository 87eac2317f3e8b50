"""A Triton model repository on disk, and its `config.pbtxt` as the real protobuf.

The configuration is built as tritonclient's `model_config_pb2.ModelConfig` and written
with protobuf's text format, so a field that Triton does not know cannot be written, and
`read_config` parses it back the same way Triton does. Layout::

    ROOT/NAME/config.pbtxt
    ROOT/NAME/1/model.py        (python format: the generated Python-backend model)
    ROOT/NAME/1/model.pt2       (or model.pt / model.onnx)
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from conch_runtime.signature import Signature, TensorSpec
from conch_runtime.tool_errors import InvalidRepository

__all__ = [
    "CONFIG",
    "MODEL_VERSION",
    "ServingOptions",
    "build_config",
    "config_signature",
    "read_config",
    "write_config",
    "write_python_model",
]

CONFIG = "config.pbtxt"
MODEL_VERSION = "1"
"""The one version directory a package holds; a new model is a new ModelVersion."""

_PLATFORM = {"torchscript": "pytorch_libtorch", "onnx": "onnxruntime_onnx"}


@dataclass(frozen=True)
class ServingOptions:
    """How Triton should run the model: where, how many instances, how to batch."""

    device: Literal["cpu", "gpu"] = "cpu"
    instances: int = 1
    max_queue_delay_us: int = 2000
    preferred_batch_sizes: tuple[int, ...] = ()
    torch_threads: int = 1

    def __post_init__(self) -> None:
        if self.instances < 1 or self.max_queue_delay_us < 0 or self.torch_threads < 1:
            raise InvalidRepository(f"invalid serving options {self}")


def _tensor(message: Any, spec: TensorSpec) -> None:
    message.name = spec.name
    message.data_type = mc.DataType.Value(spec.data_type)
    message.dims.extend(spec.dims)


def build_config(
    name: str,
    format: str,
    signature: Signature,
    serving: ServingOptions,
    model_file: str,
) -> Any:
    """The ModelConfig message for one packaged model. Pure."""
    config = mc.ModelConfig(name=name, max_batch_size=signature.max_batch_size)
    if format == "python":
        config.backend = "python"
        config.parameters["model_file"].string_value = model_file
        config.parameters["torch_threads"].string_value = str(serving.torch_threads)
    else:
        config.platform = _PLATFORM[format]
        config.default_model_filename = model_file
    for spec in signature.inputs:
        _tensor(config.input.add(), spec)
    for spec in signature.outputs:
        _tensor(config.output.add(), spec)
    batching = config.dynamic_batching
    batching.max_queue_delay_microseconds = serving.max_queue_delay_us
    batching.preferred_batch_size.extend(serving.preferred_batch_sizes)
    group = config.instance_group.add()
    group.count = serving.instances
    group.kind = (
        mc.ModelInstanceGroup.KIND_GPU
        if serving.device == "gpu"
        else (mc.ModelInstanceGroup.KIND_CPU)
    )
    return config


def write_config(model_dir: Path, config: Any) -> Path:
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / CONFIG
    path.write_text(text_format.MessageToString(config))
    return path


def read_config(path: Path) -> Any:
    """Parse a config.pbtxt with the model-config protobuf; InvalidRepository if it fails."""
    try:
        return text_format.Parse(path.read_text(), mc.ModelConfig())
    except (OSError, text_format.ParseError) as exc:
        raise InvalidRepository(f"{path}: not a valid Triton model config: {exc}") from None


def config_signature(config: Any) -> Signature:
    """The signature a parsed ModelConfig declares."""

    def spec(tensor: Any) -> TensorSpec:
        return TensorSpec(tensor.name, mc.DataType.Name(tensor.data_type), tuple(tensor.dims))

    return Signature(
        tuple(spec(t) for t in config.input),
        tuple(spec(t) for t in config.output),
        int(config.max_batch_size),
    )


def write_python_model(version_dir: Path) -> Path:
    """Copy the generic Python-backend model (`triton_model.py`) in as `model.py`."""
    version_dir.mkdir(parents=True, exist_ok=True)
    target = version_dir / "model.py"
    source = resources.files("conch_runtime").joinpath("triton_model.py")
    with resources.as_file(source) as path:
        shutil.copyfile(path, target)
    return target
