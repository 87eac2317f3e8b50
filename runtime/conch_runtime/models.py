"""Load the model to package: a TorchScript file, an exported program, or a factory.

Three kinds, told apart by what the user gives:

- ``path/to/model.pt2``: an exported program (``torch.export.save``);
- ``package.module:factory`` (plus an optional state dict): an eager ``nn.Module`` built by
  calling ``factory()``, with the state dict loaded strictly;
- any other file: a TorchScript archive (``torch.jit.save``).

An eager module is what every compression can work on; an exported program and a
TorchScript module can be pruned and cast to fp16, but Linear-layer quantization and the
student side of distillation need real ``nn.Linear`` modules, so they need a factory.
"""

from __future__ import annotations

import contextlib
import importlib
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from conch_runtime.tool_errors import InvalidModel

__all__ = ["FACTORY", "LoadedModel", "ModelKind", "load_model", "quiet_deprecations"]

ModelKind = Literal["eager", "exported", "torchscript"]
FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
"""`package.module:callable`."""


@dataclass
class LoadedModel:
    """A model ready to run on CPU in eval mode, and what it was loaded from."""

    module: torch.nn.Module
    kind: ModelKind
    source: str
    exported: torch.export.ExportedProgram | None = None


@contextlib.contextmanager
def quiet_deprecations() -> Iterator[None]:
    """torch marks TorchScript and torch.ao deprecated; the formats that need them still
    work, and a warning per call would bury the progress output."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*deprecated.*")
        yield


def load_model(
    source: str | Path | torch.nn.Module,
    *,
    weights: Path | None = None,
    search_path: Sequence[Path] = (),
) -> LoadedModel:
    """Load `source` (see the module docstring); an nn.Module is taken as is (eager)."""
    if isinstance(source, torch.nn.Module):
        if weights is not None:
            _load_state_dict(source, weights)
        return LoadedModel(source.eval(), "eager", type(source).__qualname__)
    text = str(source)
    if FACTORY.match(text) and not Path(text).exists():
        return LoadedModel(_from_factory(text, weights, search_path), "eager", text)
    path = Path(text)
    if weights is not None:
        raise InvalidModel(f"{path}: a state dict goes with a module:factory, not with a file")
    if not path.is_file():
        raise InvalidModel(f"{path}: no such model file (or a module:factory that is not one)")
    if path.suffix == ".pt2":
        try:
            program = torch.export.load(path)
            module = program.module()
        except Exception as exc:
            raise InvalidModel(f"{path}: not a loadable exported program: {exc}") from None
        return LoadedModel(module, "exported", str(path), program)
    try:
        with quiet_deprecations():
            script = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
    except Exception as exc:
        raise InvalidModel(
            f"{path}: not a TorchScript archive ({type(exc).__name__}); give an exported "
            "program as .pt2, or a module:factory with --weights for a state dict"
        ) from None
    return LoadedModel(script.eval(), "torchscript", str(path))


def _from_factory(spec: str, weights: Path | None, search_path: Sequence[Path]) -> torch.nn.Module:
    module_name, attr = spec.split(":")
    extra = [str(p) for p in search_path if str(p) not in sys.path]
    sys.path[:0] = extra
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise InvalidModel(f"{spec}: cannot import the factory: {exc}") from None
    finally:
        for entry in extra:
            sys.path.remove(entry)
    try:
        model = factory()
    except Exception as exc:
        raise InvalidModel(f"{spec}: the factory raised {type(exc).__name__}: {exc}") from None
    if not isinstance(model, torch.nn.Module):
        raise InvalidModel(f"{spec}: the factory returned {type(model).__name__}, not nn.Module")
    if weights is not None:
        _load_state_dict(model, weights)
    return model.eval()


def _load_state_dict(model: torch.nn.Module, weights: Path) -> None:
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InvalidModel(f"{weights}: not a loadable state dict: {exc}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise InvalidModel(f"{weights}: holds {type(state).__name__}, not a state dict")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise InvalidModel(f"{weights}: does not fit the model: {' '.join(first[:3])}") from None
