"""The exception tree of `package`, `validate` and `push` (pull has its own, in `errors`).

Every failure is one of these classes, with a CamelCase `reason` (usable as a Kubernetes
condition reason) and an exit code from 20 on, apart from pull's. A validation that runs
and finds a mismatch is not an error: it is a report with passed=False, and the CLI exits 1::

    ToolError                   reason ToolFailed              exit 20
    ├── InvalidModel            reason InvalidModel            exit 21  cannot load or run
    ├── InvalidSignature        reason InvalidSignature        exit 22  names, dtypes, dims
    ├── InvalidData             reason InvalidData             exit 23  unreadable or unfit data
    ├── UnsupportedCompression  reason UnsupportedCompression  exit 24  combination or format
    ├── ExportFailed            reason ExportFailed            exit 25  torch.export / ONNX
    ├── InvalidRepository       reason InvalidRepository       exit 26  config.pbtxt, manifest
    ├── ServerError             reason TritonServerFailed      exit 27  tritonserver did not serve
    └── PushFailed              reason PushFailed              exit 28  the store refused the upload
"""

from __future__ import annotations

import re
from typing import ClassVar

__all__ = [
    "ExportFailed",
    "InvalidData",
    "InvalidModel",
    "InvalidRepository",
    "InvalidSignature",
    "PushFailed",
    "ServerError",
    "ToolError",
    "UnsupportedCompression",
    "plain",
]

_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[ -/]*[0-~])")
"""CSI (colours, cursor), OSC (links, titles) and the other (nF, Fp, Fe, Fs) escapes."""
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def plain(text: str, limit: int | None = None) -> str:
    """`text` without terminal escape sequences or control characters (tools such as torch's
    exporter colour their messages), cut to `limit` characters at a word where possible."""
    text = _CONTROL.sub("", _ANSI.sub("", text))
    if limit is None or len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:") + "…"


class ToolError(Exception):
    """Base of every `package` / `validate` failure; `reason` and `exit_code` fixed per class."""

    reason: ClassVar[str] = "ToolFailed"
    exit_code: ClassVar[int] = 20

    def __init__(self, message: str) -> None:
        message = plain(message)  # what a user reads never carries terminal codes
        super().__init__(message)
        self.message = message


class InvalidModel(ToolError):
    """The model file, factory or state dict cannot be loaded, or the model cannot run."""

    reason = "InvalidModel"
    exit_code = 21


class InvalidSignature(ToolError):
    """Tensor names, data types, dims or batch size are malformed or do not fit the model."""

    reason = "InvalidSignature"
    exit_code = 22


class InvalidData(ToolError):
    """Example, validation or distillation data is unreadable or does not fit the signature."""

    reason = "InvalidData"
    exit_code = 23


class UnsupportedCompression(ToolError):
    """A compression that this model kind or export format cannot take, or a bad combination."""

    reason = "UnsupportedCompression"
    exit_code = 24


class ExportFailed(ToolError):
    """torch.export, TorchScript or ONNX export of the (compressed) model failed."""

    reason = "ExportFailed"
    exit_code = 25


class InvalidRepository(ToolError):
    """A model repository, config.pbtxt or manifest is malformed or does not match its digests."""

    reason = "InvalidRepository"
    exit_code = 26


class ServerError(ToolError):
    """tritonserver could not be found, did not start, or did not load the model."""

    reason = "TritonServerFailed"
    exit_code = 27


class PushFailed(ToolError):
    """The artifact store refused the upload, could not be reached, or stored other bytes."""

    reason = "PushFailed"
    exit_code = 28
