"""Staging cleanup on real directories: trees too deep for rmtree, stale vs live staging."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conch_runtime.cleanup import LOCK, Staging, remove_tree, staging_prefix, sweep_stale
from conch_runtime.errors import HostileArchive
from conch_runtime.pull import MARKER, PullOptions, installed_digest, pull
from conch_runtime.sources import SourceConfig
from tests.runtime.conftest import Artifact, make_artifact
from tests.runtime.helpers import MODEL_TREE, Member, pack_members, read_tree

FILES = SourceConfig(allow_file=True)


def deep_tree(root: Path, depth: int) -> Path:
    """`root` holding `depth` nested directories (a file at the bottom), made without ever
    naming a long path: deeper than PATH_MAX and than Python's recursion limit."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        os.close(os.open("f", os.O_WRONLY | os.O_CREAT, dir_fd=fd))
    finally:
        os.close(fd)
    return root


DEEP = 1500
"""Deeper than shutil.rmtree's recursion can go (Python's limit is 1000 frames)."""


def test_remove_tree_handles_a_tree_deeper_than_rmtree_can(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tree = deep_tree(tmp_path / "deep", DEEP)
    with caplog.at_level(logging.DEBUG, logger="conch_runtime.cleanup"):
        assert remove_tree(tree) is True
    assert "RecursionError" in caplog.text  # rmtree alone would have failed here
    assert list(tmp_path.iterdir()) == []


def test_remove_tree_of_nothing_is_fine(tmp_path: Path) -> None:
    assert remove_tree(tmp_path / "absent") is True


def test_sweep_removes_dead_staging_and_keeps_live_staging(tmp_path: Path) -> None:
    dest = tmp_path / "models" / "repo"
    dest.parent.mkdir()
    dead = dest.parent / f"{staging_prefix(dest)}dead"
    deep_tree(dead / "tree", DEEP)
    (dead / LOCK).touch()  # its owner is gone: nobody holds the lock
    other = dest.parent / ".other.conch-pull-x"  # another dest's staging: not ours
    other.mkdir()
    (other / LOCK).touch()
    # A live pull in another process holds its lock for as long as it runs.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from conch_runtime.cleanup import Staging; "
            "s = Staging.create(Path(sys.argv[1])); print(s.path, flush=True); sys.stdin.read()",
            str(dest),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        live = Path(holder.stdout.readline().strip())
        assert live.is_dir()
        assert sweep_stale(dest) == [dead]
        assert sorted(p.name for p in dest.parent.iterdir()) == sorted([live.name, other.name])
    finally:
        holder.communicate(timeout=30)  # stdin closed: the holder exits, its lock goes
    assert holder.returncode == 0
    assert sweep_stale(dest) == [live]  # now that its process is gone


def test_staging_without_a_lock_file_is_swept_only_once_old(tmp_path: Path) -> None:
    dest = tmp_path / "repo"
    young = tmp_path / f"{staging_prefix(dest)}young"
    young.mkdir()
    assert sweep_stale(dest) == []  # just made by a pull that has yet to lock it
    mtime = young.stat().st_mtime
    assert sweep_stale(dest, now=mtime + 3600) == [young]


def test_staging_close_removes_it_and_never_raises(tmp_path: Path) -> None:
    staging = Staging.create(tmp_path / "repo")
    deep_tree(staging.path / "tree", DEEP)
    staging.close()
    assert list(tmp_path.iterdir()) == []


def test_pull_sweeps_a_killed_pulls_staging(artifact: Artifact, models: Path) -> None:
    dest = models / "repo"
    dead = models / f"{staging_prefix(dest)}killed"
    dead.mkdir()
    (dead / LOCK).touch()
    (dead / "artifact").write_bytes(b"half a download")
    pull(artifact.uri, artifact.sha256, dest, PullOptions(config=FILES))
    assert sorted(p.name for p in models.iterdir()) == ["repo"]


def test_pull_replaces_an_earlier_tree_too_deep_for_rmtree(
    artifact: Artifact, models: Path, tmp_path: Path
) -> None:
    """An older conch pull left a deep tree in dest: a good pull swaps it out and succeeds."""
    dest = deep_tree(models / "repo", DEEP)
    (dest / MARKER).write_text("0" * 64 + "\n")
    result = pull(artifact.uri, artifact.sha256, dest, PullOptions(config=FILES))
    assert not result.skipped
    assert read_tree(dest) == MODEL_TREE and installed_digest(dest) == artifact.sha256
    assert sorted(p.name for p in models.iterdir()) == ["repo"]


@pytest.mark.parametrize("depth", [33, 2100])
def test_a_deep_member_is_hostile_and_leaves_nothing(
    depth: int, models: Path, tmp_path: Path
) -> None:
    """The 321-byte archive of issue 11: one member thousands of levels deep."""
    art = make_artifact(tmp_path / "a", pack_members([Member("a/" * depth + "f", data=b"x")]))
    with pytest.raises(HostileArchive, match=r"levels deep|longer than") as caught:
        pull(art.uri, art.sha256, models / "repo", PullOptions(config=FILES))
    assert len(caught.value.message) < 300
    assert list(models.iterdir()) == []
