"""The real node's image store cache: what its key covers, and that a clone shares only
containerd's immutable files with the cache (a node that rewrites its bolt databases, or is
removed by `cluster down`, leaves the cache as it was)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conch.dev import imagestore

BLOB = "io.containerd.content.v1.content/blobs/sha256/aa"
LAYER = "io.containerd.snapshotter.v1.overlayfs/snapshots/1/fs/usr/lib/libx.so"
META = "io.containerd.metadata.v1.bolt/meta.db"
SNAP_META = "io.containerd.snapshotter.v1.overlayfs/metadata.db"


def test_key_covers_names_and_digests_not_order() -> None:
    a, b = ("x:1", "sha256:a"), ("y:1", "sha256:b")
    assert imagestore.store_key([a, b]) == imagestore.store_key([b, a])
    assert imagestore.store_key([a, b]) != imagestore.store_key([a, ("y:1", "sha256:c")])
    assert imagestore.store_key([a]) != imagestore.store_key([("x:2", "sha256:a")])


@pytest.mark.parametrize(
    ("relative", "linked"),
    [
        (BLOB, True),
        (LAYER, True),
        ("io.containerd.snapshotter.v1.overlayfs/snapshots", True),
        (META, False),
        (SNAP_META, False),
        ("io.containerd.content.v1.content/ingest/x", False),
        ("io.containerd.snapshotter.v1.overlayfs/snapshots-old/1", False),
    ],
)
def test_only_blobs_and_layers_are_linked(relative: str, linked: bool) -> None:
    assert imagestore.is_linked(Path(relative)) is linked


def _root(path: Path) -> Path:
    for relative in (BLOB, LAYER, META, SNAP_META):
        (path / relative).parent.mkdir(parents=True, exist_ok=True)
        (path / relative).write_text(relative)
    (path / LAYER).chmod(0o755)
    return path


def test_save_then_clone_links_immutable_files_and_copies_the_rest(tmp_path: Path) -> None:
    node_a = _root(tmp_path / "a" / "containerd")
    store = imagestore.store_for("k1", tmp_path / "cache")
    stale = imagestore.store_for("k0", tmp_path / "cache")
    stale.mkdir(parents=True)
    assert not imagestore.clone(store, tmp_path / "b" / "containerd")  # nothing saved yet

    imagestore.save(node_a, store)
    assert not stale.exists()  # one store at a time
    node_b = tmp_path / "b" / "containerd"
    assert imagestore.clone(store, node_b)
    for relative in (BLOB, LAYER):
        assert (node_b / relative).stat().st_ino == (store / "root" / relative).stat().st_ino
    assert (node_b / LAYER).stat().st_mode & 0o777 == 0o755
    for relative in (META, SNAP_META):
        assert (node_b / relative).stat().st_ino != (store / "root" / relative).stat().st_ino
        (node_b / relative).write_text("rewritten by containerd")
        assert (store / "root" / relative).read_text() == relative
    with pytest.raises(FileExistsError):
        imagestore.clone(store, node_b)


def test_a_half_saved_store_is_never_used(tmp_path: Path) -> None:
    store = imagestore.store_for("k1", tmp_path / "cache")
    (store / "root").mkdir(parents=True)  # no completion mark
    assert not imagestore.clone(store, tmp_path / "node" / "containerd")
    assert not (tmp_path / "node").exists()
