"""The ModelVersion object a package is applied as (`kubectl apply -f modelversion.yaml`).

Built here as plain data with the CRD's field names (crds/serving.conch.dev_modelversions
.yaml), never through the operator's package: the runtime image does not carry it. A test
checks the result against the CRD's schema, and one against a real API server.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from conch_runtime.tool_errors import InvalidSignature

__all__ = [
    "API_VERSION",
    "KIND",
    "MODELVERSION",
    "build_modelversion",
    "default_name",
    "dump_yaml",
]

MODELVERSION = "modelversion.yaml"
"""Its file name in a package directory."""
API_VERSION = "serving.conch.dev/v1alpha1"
KIND = "ModelVersion"

_MODEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_VERSION = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")


def check_identity(model: str, version: str) -> None:
    """Raise InvalidSignature unless the CRD will accept `model` and `version`."""
    if not (0 < len(model) <= 63 and _MODEL.match(model)):
        raise InvalidSignature(
            f"model name {model!r} must be a DNS label: lowercase letters, digits and '-'"
        )
    if not (0 < len(version) <= 63 and _VERSION.match(version)):
        raise InvalidSignature(
            f"version {version!r}: letters, digits, '.', '_' or '-', starting and ending "
            "alphanumeric, at most 63"
        )


def default_name(model: str, version: str) -> str:
    """`MODEL-VERSION` made a valid object name (lowercase, '_' as '-', at most 253)."""
    name = re.sub(r"[^a-z0-9.-]", "-", f"{model}-{version}".lower())
    return name[:253].strip("-.")


def build_modelversion(
    *,
    model: str,
    version: str,
    format: str,
    uri: str,
    sha256: str,
    signature: dict[str, Any],
    compression: dict[str, Any],
) -> dict[str, Any]:
    """The whole object, named `default_name(model, version)` and without a namespace (the
    one `kubectl apply` is given); `compression` already in the CRD's camelCase form."""
    metadata: dict[str, Any] = {"name": default_name(model, version)}
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata,
        "spec": {
            "model": model,
            "version": version,
            "format": format,
            "source": {"uri": uri, "sha256": sha256},
            "signature": signature,
            "compression": compression,
        },
    }


def dump_yaml(obj: dict[str, Any], path: Path) -> Path:
    header = "# Written by `conch package`; apply with `kubectl apply -f`.\n"
    path.write_text(header + yaml.safe_dump(obj, sort_keys=False))
    return path
