"""What an unpacked artifact must be before Triton sees it: a model repository.

At least one model folder, and in each a `config.pbtxt` that Triton's own model-config
protobuf parses. An empty archive, or a folder Triton would refuse to load, fails the pull
with a reason the ModelVersion's owner can act on, instead of a server that starts and
serves nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conch_runtime.archive import shown
from conch_runtime.errors import InvalidArchive

__all__ = ["CONFIG", "check_repository", "parse_config"]

CONFIG = "config.pbtxt"


def parse_config(path: Path) -> Any:
    """`path` parsed as Triton's `ModelConfig`; InvalidArchive when it is not one."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    where = f"{path.parent.name}/{path.name}"
    try:
        return text_format.Parse(path.read_text(encoding="utf-8"), mc.ModelConfig())
    except (text_format.ParseError, ValueError) as exc:  # ValueError: not UTF-8
        raise InvalidArchive(
            f"{shown(where)} is not a Triton model configuration: {shown(str(exc))}"
        ) from None


def check_repository(tree: Path) -> list[str]:
    """The model names in `tree`; InvalidArchive if there is none or one lacks a config."""
    models = sorted(p for p in tree.iterdir() if p.is_dir() and not p.is_symlink())
    if not models:
        raise InvalidArchive(
            "the archive holds no model: a repository is MODEL/config.pbtxt plus version "
            "folders (MODEL/1/...)"
        )
    for model in models:
        config = model / CONFIG
        if not config.is_file():
            raise InvalidArchive(f"model folder {shown(model.name)} has no {CONFIG}")
        parse_config(config)
    return [m.name for m in models]
