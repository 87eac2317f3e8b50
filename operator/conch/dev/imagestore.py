"""A cache of containerd's image store, so a warm real node does not import the 3 GB Triton
image again.

Importing an archive costs containerd a copy of every compressed blob into its content store
and an unpack of every layer into the overlayfs snapshotter (about 2 minutes for the Triton
image on 2 cores). Both results are immutable files: blobs are named by their digest, and an
unpacked layer is only ever a read-only lower directory. So the first node that imports a
set of archives saves its containerd root, stopped, to `~/.cache/conch/node-images/<key>/`,
and later nodes start from a clone of it: hard links for the blobs and layers (same file
system, no bytes copied), real copies for everything else (the bolt databases containerd
rewrites). Removing the node's folder (`cluster down`) unlinks its names only; the cache is
like the toolchain's, outside any node's state. The key covers containerd's version and the
archives' manifest digests, so a rebuilt image is a new key; older stores are removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterable
from pathlib import Path

from conch.dev import versions
from conch.dev.toolchain import cache_root

STORE_FORMAT = 1
"""Bump when what a store holds changes (containerd config, snapshotter)."""
LINKED = (
    "io.containerd.content.v1.content/blobs",
    "io.containerd.snapshotter.v1.overlayfs/snapshots",
)
"""Parts of containerd's root whose files are written once and never changed in place."""
DONE = "complete"
"""Marks a store whose saving finished (a half-saved store is never used)."""
OCI_REF_NAME = "org.opencontainers.image.ref.name"

__all__ = ["archive_images", "clone", "is_linked", "save", "store_for", "store_key"]


def archive_images(archive: Path) -> dict[str, str]:
    """Image name -> manifest digest for every manifest an OCI archive's index names (the
    name containerd gives it: `io.containerd.image.name`, else the OCI ref.name)."""
    with tarfile.open(archive) as tar:
        members = {m.name.removeprefix("./"): m for m in tar.getmembers()}
        member = tar.extractfile(members["index.json"]) if "index.json" in members else None
        if member is None:
            return {}
        index = json.load(member)
    images: dict[str, str] = {}
    for manifest in index.get("manifests", []):
        notes = manifest.get("annotations", {})
        name = notes.get("io.containerd.image.name") or notes.get(OCI_REF_NAME)
        if name:
            images[str(name)] = str(manifest["digest"])
    return images


def store_key(images: Iterable[tuple[str, str]]) -> str:
    """A digest of what a saved store holds: its format, containerd's version and each
    image's name and manifest digest (order does not matter)."""
    digest = hashlib.sha256(f"{STORE_FORMAT}\0{versions.CONTAINERD}\0".encode())
    for name, manifest in sorted(set(images)):
        digest.update(f"{name}\0{manifest}\0".encode())
    return digest.hexdigest()[:16]


def store_for(key: str, root: Path | None = None) -> Path:
    """Where the store of `key` lives (it may not be there yet)."""
    return (root or cache_root()) / "node-images" / key


def is_linked(relative: Path) -> bool:
    """Whether a path inside containerd's root is one of the immutable parts (hard-linked)."""
    text = relative.as_posix()
    return any(text == part or text.startswith(part + "/") for part in LINKED)


def _clone_tree(src: Path, dst: Path) -> None:
    """`dst` as a copy of `src` whose immutable parts are hard links (cp keeps owners,
    modes and the overlay xattrs that mark opaque directories)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", "--link", str(src), str(dst)], check=True, capture_output=True)
    for directory, subdirectories, files in os.walk(dst):
        here = Path(directory)
        if is_linked(here.relative_to(dst)):
            subdirectories.clear()  # all links: nothing below needs a look
            continue
        for name in files:
            path = here / name
            if path.is_symlink() or not path.is_file() or is_linked(path.relative_to(dst)):
                continue
            copy = path.with_name(name + ".conch-copy")
            shutil.copy2(path, copy)  # a file of its own: containerd rewrites it in place
            copy.replace(path)


def clone(store: Path, containerd_root: Path) -> bool:
    """Start `containerd_root` (which must not exist yet) from a saved store; False when
    there is none."""
    if not (store / DONE).exists():
        return False
    if containerd_root.exists():
        raise FileExistsError(
            f"{containerd_root} exists: a store is cloned before containerd starts"
        )
    _clone_tree(store / "root", containerd_root)
    return True


def save(containerd_root: Path, store: Path) -> None:
    """Save a stopped containerd's root as `store`, then remove every other store (one at a
    time on this machine: each holds a Triton image, 8 GB unpacked and compressed)."""
    partial = store.with_name(store.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    _clone_tree(containerd_root, partial / "root")
    (partial / DONE).write_text("")
    shutil.rmtree(store, ignore_errors=True)
    partial.replace(store)
    for other in store.parent.iterdir():
        if other != store:
            shutil.rmtree(other, ignore_errors=True)
