"""Image recipes (images/images.toml) and the cache keys of what they build.

Pure code: reading the recipes, deciding which files and tool versions an image's bytes
depend on, and the arguments of the tools that build it. The building itself is in
`conch.dev.imagebuild`; running an image without Docker is in `conch.dev.imagerun`.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
RECIPES = REPO_ROOT / "images" / "images.toml"
PIP_LOCK = "locks/pip.txt"
"""The installer's own lock: pip runs from its wheel inside each image root, then is gone."""
PROJECT_SOURCES = ("pyproject.toml", "README.md", "operator/conch", "runtime/conch_runtime")
"""What the conch wheel is built from (an image with an `extra` depends on it)."""
BUILD_FORMAT = 3
"""Bump when the build steps change in a way that changes images' bytes."""
VENV = "/opt/conch"

__all__ = [
    "Base",
    "Recipe",
    "base_key",
    "image_key",
    "load",
    "lock_commands",
    "lock_references",
    "pip_download_args",
    "pip_install_args",
]


@dataclass(frozen=True)
class Base:
    """The Debian root every image starts from (one shared layer)."""

    suite: str
    variant: str
    packages: tuple[str, ...]
    python: str


@dataclass(frozen=True)
class Recipe:
    """One image: its Python environment (a hashed lock) and its OCI config."""

    name: str
    reference: str
    lock: str
    user: str
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    extra: str | None = None
    setup: str | None = None
    go: tuple[str, ...] = field(default=(), repr=False)
    """Go main packages (folders of this repository) built static into
    /usr/local/bin/conch-<folder name>, in the conch layer (so only with `extra`). Left out
    of the repr, so the keys of images without Go binaries stay what they were."""

    @property
    def tag(self) -> str:
        """The reference's tag (the OCI layout's ref name)."""
        return self.reference.rsplit(":", 1)[1]


def load(path: Path = RECIPES) -> tuple[Base, dict[str, Recipe]]:
    """Parse the recipes file; ValueError names a missing or unknown field."""
    data = tomllib.loads(path.read_text())
    b = data["base"]
    base = Base(b["suite"], b["variant"], tuple(b["packages"]), b["python"])
    recipes: dict[str, Recipe] = {}
    known = set(Recipe.__dataclass_fields__) - {"name"}
    for name, fields in data["image"].items():
        unknown = set(fields) - known
        if unknown:
            raise ValueError(f"image {name}: unknown fields {sorted(unknown)}")
        if not re.fullmatch(r"[^:@\s]+:[A-Za-z0-9_][A-Za-z0-9._-]*", fields["reference"]):
            raise ValueError(f"image {name}: reference needs a tag: {fields['reference']!r}")
        if fields.get("go") and not fields.get("extra"):
            raise ValueError(f"image {name}: go binaries go in the conch layer: set extra")
        for listed in ("entrypoint", "cmd", "go"):
            if listed in fields:
                fields[listed] = tuple(fields[listed])
        recipes[name] = Recipe(name=name, **fields)
    return base, recipes


def _digest(parts: Iterable[tuple[str, bytes]]) -> str:
    h = hashlib.sha256()
    for label, data in parts:
        h.update(f"{label}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def base_key(base: Base, tools: dict[str, str]) -> str:
    """A digest of what decides the Debian root: the base recipe and the tools' versions."""
    return _digest(
        [
            ("format", str(BUILD_FORMAT).encode()),
            ("base", repr(base).encode()),
            *((f"tool:{k}", v.encode()) for k, v in sorted(tools.items())),
        ]
    )


def _tree_files(root: Path, relative: str) -> list[Path]:
    path = root / relative
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def image_key(recipe: Recipe, base: str, root: Path = REPO_ROOT) -> str:
    """A digest of everything an image's bytes depend on: base, recipe, locks, setup files
    and, for images that carry conch itself, the project's source."""
    images = root / "images"
    files = [images / recipe.lock, images / PIP_LOCK]
    if recipe.setup:
        files += _tree_files(images, str(Path(recipe.setup).parent))
    if recipe.extra:
        for relative in (*PROJECT_SOURCES, *recipe.go):
            files += _tree_files(root, relative)
    return _digest(
        [
            ("base", base.encode()),
            ("recipe", repr(recipe).encode()),
            *((("go", repr(recipe.go).encode()),) if recipe.go else ()),
            *((str(f.relative_to(root)), f.read_bytes()) for f in files),
        ]
    )


def lock_references(text: str) -> set[str]:
    """`name==version` of every pinned requirement in a lock file (hashes left out)."""
    pins = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)", text, flags=re.MULTILINE)
    return {f"{_normalize(name)}=={version}" for name, version in pins}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _platform_args(python: str) -> list[str]:
    """pip download flags for bookworm's CPython (glibc 2.36), wheels only."""
    platforms = [f"manylinux_2_{minor}_x86_64" for minor in range(36, 16, -1)]
    platforms += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
    abi = "cp" + python.replace(".", "")
    args = ["--only-binary=:all:", "--python-version", python, "--implementation", "cp"]
    args += ["--abi", abi, "--abi", "abi3", "--abi", "none"]
    for platform in platforms:
        args += ["--platform", platform]
    return args


def pip_download_args(lock: Path, wheels: Path, python: str) -> list[str]:
    """Arguments of `pip download` that fetch a lock's wheels into the shared wheel cache
    (files already there are checked against the lock's hashes and reused)."""
    return [
        "download",
        "--quiet",
        "--require-hashes",
        "--no-deps",
        *_platform_args(python),
        "-r",
        str(lock),
        "--dest",
        str(wheels),
    ]


def pip_install_args(lock: str, wheels: str) -> list[str]:
    """Arguments of the pip that runs inside the image root: offline, hashes required."""
    return [
        "install",
        "--quiet",
        "--no-index",
        "--no-cache-dir",
        "--no-deps",
        "--require-hashes",
        "--find-links",
        wheels,
        "-r",
        lock,
    ]


def lock_commands(base: Base, recipes: Iterable[Recipe], uv: str = "uv") -> list[list[str]]:
    """The `uv pip compile` runs that (re)write every lock, from the repository root.

    Images with an `extra` lock that extra of pyproject.toml; others, and pip itself, have
    a `<name>.in` beside the recipes. The OpenAI `triton` compiler (torch.compile only) is
    left out.
    """
    jobs = [(["images/pip.in"], PIP_LOCK)]
    for r in recipes:
        source = ["pyproject.toml", "--extra", r.extra] if r.extra else [f"images/{r.name}.in"]
        jobs.append((source, r.lock))
    flags = ["--generate-hashes", "--only-binary", ":all:", "--python-version", base.python]
    flags += ["--python-platform", "x86_64-manylinux_2_36", "--no-header", "--quiet"]
    flags += ["--no-emit-package", "triton"]
    return [[uv, "pip", "compile", *source, *flags, "-o", f"images/{out}"] for source, out in jobs]
