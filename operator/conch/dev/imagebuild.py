"""Build the recipes of images/images.toml into OCI archives, without a Docker daemon.

mmdebstrap makes the Debian root once (a tarball, cached by its key) and umoci turns it into
each image's first layer. The image's locked Python environment is installed inside that
root, by the root's own Python, with pip run from its hashed wheel, offline, from wheels
that the host downloaded against the lock's hashes (a shared cache, so torch is fetched
once); `umoci repack` records what changed as the second layer. Images that carry conch
get it as a third, small layer on a cached copy of the first two, so a source change
rebuilds only that. Every layer is streamed from
disk by umoci; nothing here holds one in memory.

Output, per image: ~/.cache/conch/images/<key>/ with `layout/` (an OCI layout),
`<name>.oci.tar` (the same as an OCI archive, for `ctr images import` and `skopeo copy`),
`bundle/` (the image unpacked as an OCI runtime bundle, for `conch.dev.imagerun`) and
`result.json`. A key that is already there is not built again.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from conch.dev import gate, images
from conch.dev.images import VENV, Base, Recipe
from conch.dev.toolchain import cache_root

STAGE = "/tmp/conch-image"
"""Where a build puts the lock, the wheels and the setup files inside the root (removed)."""
CONTAINERD_NAME = "io.containerd.image.name"
_CHROOT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "",
}
_IMAGE_ENV = (
    f"PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG=C.UTF-8",
    "PYTHONUNBUFFERED=1",
    "PYTHONDONTWRITEBYTECODE=1",  # compiled at install; the root is read-only at run time
)
_DPKG_EXCLUDES = ("doc", "man", "info", "locale", "lintian", "linda")

__all__ = ["Built", "build", "images_root", "tool_versions"]


@dataclass(frozen=True)
class Built:
    """One image in the cache: where its archive is, its manifest digest and size."""

    name: str
    reference: str
    key: str
    archive: str
    layout: str
    digest: str
    compressed_bytes: int
    uncompressed_bytes: int
    build_seconds: float

    @property
    def directory(self) -> Path:
        return Path(self.archive).parent


def images_root() -> Path:
    return cache_root() / "images"


def _say(message: str) -> None:
    print(f"conch: {message}", file=sys.stderr, flush=True)


def _run(argv: list[str], env: dict[str, str] | None = None) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[:6])} ... failed ({done.returncode}):\n{done.stderr[-3000:]}"
        )
    return done.stdout


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise RuntimeError(f"{tool} is not installed (Debian: apt-get install {tool})")
    return path


def tool_versions() -> dict[str, str]:
    """The versions of the tools whose output ends up in the images."""
    return {tool: _run([_need(tool), "--version"]).strip() for tool in ("mmdebstrap", "umoci")}


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _apt_sources() -> list[str]:
    """The host's own apt sources: the image comes from the mirror this machine uses."""
    found = sorted(str(p) for p in Path("/etc/apt/sources.list.d").glob("*.sources"))
    if Path("/etc/apt/sources.list").is_file():
        found.append("/etc/apt/sources.list")
    if not found:
        raise RuntimeError("no apt sources on this machine for mmdebstrap")
    return found


def _ensure_base(base: Base, key: str) -> Path:
    """The Debian root as a tarball (cached by its key)."""
    tarball = images_root() / f"base-{key[:16]}" / "base.tar"
    if tarball.exists():
        return tarball
    tarball.parent.mkdir(parents=True, exist_ok=True)
    partial = tarball.with_suffix(".partial.tar")
    _say(f"mmdebstrap: Debian {base.suite} with {', '.join(base.packages)}")
    argv = [_need("mmdebstrap"), "--quiet", f"--variant={base.variant}"]
    argv.append("--include=" + ",".join(base.packages))
    argv += [f"--dpkgopt=path-exclude=/usr/share/{d}/*" for d in _DPKG_EXCLUDES]
    argv += [base.suite, str(partial), *_apt_sources()]
    _run(argv)
    partial.rename(tarball)
    for old in images_root().glob("base-*"):  # one base stays: the images built from an
        if old != tarball.parent:  # older one keep it as their first layer
            shutil.rmtree(old, ignore_errors=True)
    return tarball


def _download_wheels(lock: Path, wheels: Path, python: str) -> None:
    wheels.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_FIND_LINKS")}
    _run([*pip, *images.pip_download_args(lock, wheels, python)], env=env)


def _conch_wheel(out: Path) -> Path:
    """The conch wheel, built from a copy of the sources (no build/ left in the checkout)."""
    with tempfile.TemporaryDirectory(prefix="conch-wheel-") as tmp:
        src = Path(tmp)
        for relative in images.PROJECT_SOURCES:
            origin = images.REPO_ROOT / relative
            if origin.is_dir():
                shutil.copytree(
                    origin, src / relative, ignore=shutil.ignore_patterns("__pycache__")
                )
            else:
                shutil.copy2(origin, src / relative)
        argv = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"]
        _run([*argv, "--no-build-isolation", "--wheel-dir", str(out), str(src)])
    (wheel,) = out.glob("conch-*.whl")
    return wheel


def _chroot(root: Path, *argv: str) -> None:
    _run(["chroot", str(root), *argv], env=dict(_CHROOT_ENV))


def _stage(root: Path) -> tuple[Path, list[str]]:
    """The staging folder inside `root`, with every cached wheel linked in, and the argv
    prefix that runs pip from its own wheel with the image's Python."""
    wheels = images_root() / "wheels"
    stage = root / STAGE.lstrip("/")
    (stage / "wheels").mkdir(parents=True)
    for wheel in wheels.glob("*.whl"):
        os.link(wheel, stage / "wheels" / wheel.name)
    (pip_wheel,) = (stage / "wheels").glob("pip-*.whl")
    return stage, [f"{VENV}/bin/python", f"{STAGE}/wheels/{pip_wheel.name}/pip"]


def _install_lock(recipe: Recipe, base: Base, root: Path) -> None:
    """The recipe's locked Python environment, installed by the image's own Python, then
    its setup script."""
    lock_dir = images.REPO_ROOT / "images"
    for lock in (lock_dir / images.PIP_LOCK, lock_dir / recipe.lock):
        _download_wheels(lock, images_root() / "wheels", base.python)
    stage, pip = _stage(root)
    shutil.copy2(lock_dir / recipe.lock, stage / "lock.txt")
    _chroot(root, "python3", "-m", "venv", "--without-pip", VENV)
    _chroot(root, *pip, *images.pip_install_args(f"{STAGE}/lock.txt", f"{STAGE}/wheels"))
    if recipe.setup:
        shutil.copytree(lock_dir / Path(recipe.setup).parent, stage, dirs_exist_ok=True)
        _chroot(root, "/bin/sh", f"{STAGE}/{Path(recipe.setup).name}")
    shutil.rmtree(stage)


def _install_conch(root: Path) -> None:
    """The conch wheel of this checkout, without dependencies (the lock brought them)."""
    stage, pip = _stage(root)
    wheel = _conch_wheel(stage)
    install = ["install", "--quiet", "--no-index", "--no-deps", "--no-cache-dir"]
    _chroot(root, *pip, *install, f"{STAGE}/{wheel.name}")
    shutil.rmtree(stage)


def _install_go(recipe: Recipe, root: Path) -> None:
    """The recipe's Go binaries (static, CGO off) into /usr/local/bin (e.g. the gate)."""
    for relative in recipe.go:
        out = root / "usr" / "local" / "bin" / f"conch-{Path(relative).name}"
        out.parent.mkdir(parents=True, exist_ok=True)
        gate.build_into(out, images.REPO_ROOT / relative)


def _config_args(recipe: Recipe) -> list[str]:
    args = [f"--config.user={recipe.user}", "--config.workingdir=/tmp"]
    args += [f"--config.env={e}" for e in _IMAGE_ENV]
    args += [f"--config.entrypoint={a}" for a in recipe.entrypoint]
    args += [f"--config.cmd={a}" for a in recipe.cmd]
    args += [f"--config.label=org.opencontainers.image.title={recipe.name}"]
    return args


def _describe(layout: Path) -> tuple[str, int]:
    """The manifest's digest and the image's compressed size (config + layers)."""
    index = json.loads((layout / "index.json").read_text())
    digest = str(index["manifests"][0]["digest"])
    blob = layout / "blobs" / "sha256" / digest.split(":", 1)[1]
    manifest = json.loads(blob.read_text())
    compressed = int(manifest["config"]["size"]) + sum(int(x["size"]) for x in manifest["layers"])
    return digest, compressed


def _name_for_containerd(layout: Path, reference: str) -> None:
    """Give the manifest its full reference, which `ctr images import` uses as the name."""
    path = layout / "index.json"
    index = json.loads(path.read_text())
    for entry in index["manifests"]:
        entry.setdefault("annotations", {})[CONTAINERD_NAME] = reference
    path.write_text(json.dumps(index))


def _du(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _umoci_image(recipe: Recipe, base: Base, base_tar: Path, work: Path) -> None:
    """An image of the base layer and the recipe's locked environment (no conch) in
    `work/layout`, and the same unpacked in `work/bundle`."""
    layout, bundle = work / "layout", work / "bundle"
    image = f"{layout}:{recipe.tag}"
    umoci = _need("umoci")
    work.mkdir(parents=True)
    _run([umoci, "init", "--layout", str(layout)])
    _run([umoci, "new", "--image", image])
    _run([umoci, "raw", "add-layer", "--image", image, str(base_tar)])
    # Configured before the unpack, so the bundle's config.json is the final one and the
    # bundle itself (after the repack, exactly the image) is kept for `imagerun`.
    _run([umoci, "config", "--image", image, *_config_args(recipe)])
    _run([umoci, "unpack", "--image", image, str(bundle)])
    _install_lock(recipe, base, bundle / "rootfs")
    _run([umoci, "repack", "--image", image, str(bundle)])


def _dependencies(recipe: Recipe, base: Base, base_tar: Path, key: str) -> Path:
    """The image without conch (base + locked environment), cached by the key of the recipe
    without its extra: a change to the project's source only adds a small last layer."""
    done = images_root() / f"deps-{key[:32]}"
    if (done / "layout" / "index.json").exists():
        return done
    work = images_root() / f"deps-{key[:32]}.partial"
    shutil.rmtree(work, ignore_errors=True)
    _say(f"installing {recipe.lock} for image {recipe.name}")
    _umoci_image(recipe, base, base_tar, work)
    (work / "name").write_text(recipe.name)
    for old in images_root().glob("deps-*/name"):
        if old.parent != work and old.read_text() == recipe.name:
            shutil.rmtree(old.parent, ignore_errors=True)
    work.rename(done)
    return done


def _copy_layout(source: Path, target: Path) -> None:
    """A layout copy whose blobs are hard links (content-addressed, never rewritten)."""
    shutil.copytree(source, target, copy_function=os.link)
    for name in ("index.json", "oci-layout"):
        (target / name).unlink()
        shutil.copy2(source / name, target / name)


def _build_one(recipe: Recipe, base: Base, base_tar: Path, key: str, deps_key: str) -> Built:
    final = images_root() / key[:32]
    began = time.monotonic()
    work = images_root() / f"{key[:32]}.partial"
    shutil.rmtree(work, ignore_errors=True)
    layout, bundle = work / "layout", work / "bundle"
    _say(f"building image {recipe.name} ({recipe.reference})")
    if recipe.extra:
        deps = _dependencies(recipe, base, base_tar, deps_key)
        work.mkdir(parents=True)
        _copy_layout(deps / "layout", layout)
        _run(["cp", "-a", str(deps / "bundle"), str(bundle)])
        _install_conch(bundle / "rootfs")
        _install_go(recipe, bundle / "rootfs")
        _run([_need("umoci"), "repack", "--image", f"{layout}:{recipe.tag}", str(bundle)])
    else:
        _umoci_image(recipe, base, base_tar, work)
    unpacked = _du(bundle / "rootfs")
    _run([_need("umoci"), "gc", "--layout", str(layout)])
    _name_for_containerd(layout, recipe.reference)
    archive = work / f"{recipe.name}.oci.tar"
    _run(["tar", "-C", str(layout), "-cf", str(archive), "."])
    digest, compressed = _describe(layout)
    built = Built(
        name=recipe.name,
        reference=recipe.reference,
        key=key,
        archive=str(final / archive.name),
        layout=str(final / "layout"),
        digest=digest,
        compressed_bytes=compressed,
        uncompressed_bytes=unpacked,
        build_seconds=round(time.monotonic() - began, 1),
    )
    (work / "result.json").write_text(json.dumps(asdict(built), indent=2))
    shutil.rmtree(final, ignore_errors=True)
    work.rename(final)
    _prune(recipe.name, keep=final)
    return built


def _prune(name: str, keep: Path) -> None:
    """Older builds of the same image go: one archive per image stays in the cache."""
    for result in images_root().glob("*/result.json"):
        if result.parent != keep and json.loads(result.read_text()).get("name") == name:
            shutil.rmtree(result.parent, ignore_errors=True)


def _cached(key: str) -> Built | None:
    """The build recorded under `key`, its paths taken from where the cache is now: a cache
    moved, or reached through another CONCH_CACHE, still serves."""
    folder = images_root() / key[:32]
    result = folder / "result.json"
    if not result.exists():
        return None
    built = Built(**json.loads(result.read_text()))
    return replace(
        built, archive=str(folder / Path(built.archive).name), layout=str(folder / "layout")
    )


def build(names: list[str] | None = None) -> list[Built]:
    """Build (or find in the cache) the named images, every recipe when `names` is None."""
    base, recipes = images.load()
    unknown = set(names or []) - set(recipes)
    if unknown:
        raise ValueError(f"no image recipe named {sorted(unknown)}; have {sorted(recipes)}")
    chosen = [recipes[n] for n in (names or list(recipes))]
    with _locked(images_root() / ".lock"):
        bkey = images.base_key(base, tool_versions())
        out: list[Built] = []
        for recipe in chosen:
            key = images.image_key(recipe, bkey)
            found = _cached(key)
            if found is None:
                # the dependencies layer holds neither conch nor its Go binaries
                deps_key = images.image_key(replace(recipe, extra=None, go=()), bkey)
                found = _build_one(recipe, base, _ensure_base(base, bkey), key, deps_key)
            out.append(found)
        return out
