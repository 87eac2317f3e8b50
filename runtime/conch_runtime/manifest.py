"""The package's record of itself: file digests, the artifact, the compression report.

`conch.json` sits at the top of a package directory and lists the sha256 of every other
file in it, the artifact (a tar.gz of the model repository, written reproducibly: the
same files give the same bytes) with its digest and size, and what compression did and
measured. `validate` checks the digests before it trusts anything else in the directory.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conch_runtime.tool_errors import InvalidRepository

__all__ = [
    "MANIFEST",
    "SCHEMA",
    "Manifest",
    "file_digests",
    "sha256_file",
    "verify_files",
    "write_artifact",
]

MANIFEST = "conch.json"
SCHEMA = "conch.dev/package/v1"
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _listed(path: Path, root: Path, skip: tuple[str, ...]) -> bool:
    relative = path.relative_to(root)
    return (
        path.is_file()
        and not path.is_symlink()
        and relative.as_posix() not in skip
        and "__pycache__" not in relative.parts
    )


def file_digests(root: Path, *, skip: tuple[str, ...] = (MANIFEST,)) -> dict[str, str]:
    """sha256 of every regular file under `root`, by POSIX path relative to it, sorted.

    `__pycache__` directories are left out: Triton's Python backend compiles `model.py`
    beside itself when it loads a repository in place (it ignores PYTHONDONTWRITEBYTECODE).
    """
    return {
        path.relative_to(root).as_posix(): sha256_file(path)
        for path in sorted(root.rglob("*"))
        if _listed(path, root, skip)
    }


def verify_files(root: Path, expected: dict[str, str]) -> list[str]:
    """Problems with `root` against recorded digests: missing, changed or unlisted files."""
    actual = file_digests(root)
    problems = [f"{name}: missing" for name in sorted(set(expected) - set(actual))]
    problems += [
        f"{name}: sha256 {actual[name]} differs from the manifest's {digest}"
        for name, digest in sorted(expected.items())
        if name in actual and actual[name] != digest
    ]
    problems += [f"{name}: not in the manifest" for name in sorted(set(actual) - set(expected))]
    return problems


def write_artifact(repository: Path, target: Path) -> tuple[str, int]:
    """Pack `repository`'s contents as a reproducible tar.gz; returns (sha256, size).

    Only directories and regular files (a link refuses the build, as `pull` would refuse
    the artifact), sorted, with zeroed times, owners and normalized modes; `__pycache__`
    is left out.
    """
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
    ):
        for path in sorted(repository.rglob("*")):
            if "__pycache__" in path.relative_to(repository).parts:
                continue
            name = path.relative_to(repository).as_posix()
            if path.is_symlink() or not (path.is_file() or path.is_dir()):
                raise InvalidRepository(f"{path}: only files and directories can be packaged")
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if path.is_dir():
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
                continue
            info.size, info.mode = path.stat().st_size, 0o644
            with path.open("rb") as handle:
                tar.addfile(info, handle)
    data = buffer.getvalue()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return hashlib.sha256(data).hexdigest(), len(data)


@dataclass
class Manifest:
    """The content of conch.json (camelCase on disk)."""

    model: str
    version: str
    format: str
    model_file: str
    """Path of the model file inside the repository (e.g. `mlp/1/model.pt2`)."""
    signature: dict[str, Any]
    artifact: str
    artifact_sha256: str
    artifact_bytes: int
    files: dict[str, str] = field(default_factory=dict)
    compression: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, str] = field(default_factory=dict)
    """Role (`inputs`, `expected`, `original`) -> path of a .npz under the package."""
    tools: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "model": self.model,
            "version": self.version,
            "format": self.format,
            "modelFile": self.model_file,
            "signature": self.signature,
            "artifact": {
                "file": self.artifact,
                "sha256": self.artifact_sha256,
                "sizeBytes": self.artifact_bytes,
            },
            "compression": self.compression,
            "validation": self.validation,
            "files": self.files,
            "tools": self.tools,
        }

    def write(self, directory: Path) -> Path:
        path = directory / MANIFEST
        path.write_text(json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n")
        return path

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        path = directory / MANIFEST
        try:
            data = json.loads(path.read_text())
            if data.get("schema") != SCHEMA:
                raise InvalidRepository(f"{path}: schema {data.get('schema')!r}, want {SCHEMA}")
            artifact = data["artifact"]
            return cls(
                model=data["model"],
                version=data["version"],
                format=data["format"],
                model_file=data["modelFile"],
                signature=data["signature"],
                artifact=artifact["file"],
                artifact_sha256=artifact["sha256"],
                artifact_bytes=int(artifact["sizeBytes"]),
                files=dict(data["files"]),
                compression=dict(data.get("compression", {})),
                validation=dict(data.get("validation", {})),
                tools=dict(data.get("tools", {})),
            )
        except FileNotFoundError:
            raise InvalidRepository(f"{directory}: no {MANIFEST}; not a conch package") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InvalidRepository(f"{path}: malformed manifest: {exc!r}") from None
