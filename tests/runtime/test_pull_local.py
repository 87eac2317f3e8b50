"""Pull from file:// and pvc:// on real files: success, idempotence, and hostile artifacts."""

from __future__ import annotations

import os
import re
import stat
import tarfile
from pathlib import Path

import pytest

from conch_runtime.errors import (
    DestinationError,
    DigestMismatch,
    HostileArchive,
    InvalidArchive,
    NotFound,
    PullError,
    TooLarge,
    UnsupportedSource,
)
from conch_runtime.pull import MARKER, PullOptions, installed_digest, pull
from conch_runtime.sources import SourceConfig
from tests.runtime.conftest import Artifact, make_artifact
from tests.runtime.helpers import (
    MODEL_TREE,
    Member,
    pack_dir,
    pack_members,
    read_tree,
    write_tree,
    zero_bomb,
)

FILES = SourceConfig(allow_file=True)
"""file:// is refused unless allowed: these tests read the artifacts they wrote."""


def assert_left_nothing(models: Path, dest: Path) -> None:
    """No dest, no staging directory, no temp file: the volume is as empty as before."""
    assert not dest.exists()
    assert list(models.iterdir()) == []


def test_file_pull_installs_the_tree_byte_for_byte(artifact: Artifact, models: Path) -> None:
    dest = models / "repo"
    result = pull(artifact.uri, artifact.sha256, dest, PullOptions(config=FILES))
    assert read_tree(dest) == MODEL_TREE
    assert installed_digest(dest) == artifact.sha256
    assert (result.skipped, result.files, result.attempts) == (False, len(MODEL_TREE), 1)
    assert result.downloaded_bytes == len(artifact.data)
    assert result.unpacked_bytes == sum(len(v) for v in MODEL_TREE.values())
    assert sorted(p.name for p in models.iterdir()) == ["repo"]  # staging is gone
    assert stat.S_IMODE((dest / "mlp" / "1" / "model.py").stat().st_mode) & 0o022 == 0


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_every_tar_compression_unpacks(tmp_path: Path, models: Path, mode: str) -> None:
    data = pack_dir(write_tree(tmp_path / "src", MODEL_TREE), mode)
    art = make_artifact(tmp_path / "a", data)
    pull(art.uri, art.sha256, models / "repo", PullOptions(config=FILES))
    assert read_tree(models / "repo") == MODEL_TREE


def test_second_pull_is_a_no_op(artifact: Artifact, models: Path) -> None:
    dest = models / "repo"
    pull(artifact.uri, artifact.sha256, dest, PullOptions(config=FILES))
    weights = dest / "mlp" / "1" / "weights.bin"
    before = weights.stat()
    artifact.path.unlink()  # a fetch would now fail: a no-op must not fetch
    again = pull(artifact.uri, artifact.sha256.upper(), dest, PullOptions(config=FILES))
    assert again.skipped
    assert again.downloaded_bytes == 0
    assert (weights.stat().st_ino, weights.stat().st_mtime_ns) == (
        before.st_ino,
        before.st_mtime_ns,
    )


def test_new_digest_replaces_an_earlier_pull(
    artifact: Artifact, models: Path, tmp_path: Path
) -> None:
    dest = models / "repo"
    pull(artifact.uri, artifact.sha256, dest, PullOptions(config=FILES))
    newer_tree = {"mlp/config.pbtxt": b'name: "mlp"\n', "mlp/2/model.py": b"v2\n"}
    newer = make_artifact(tmp_path / "v2", pack_dir(write_tree(tmp_path / "v2src", newer_tree)))
    result = pull(newer.uri, newer.sha256, dest, PullOptions(config=FILES))
    assert not result.skipped
    assert read_tree(dest) == newer_tree
    assert installed_digest(dest) == newer.sha256
    assert sorted(p.name for p in models.iterdir()) == ["repo"]


def test_foreign_destination_is_never_replaced(artifact: Artifact, models: Path) -> None:
    dest = models / "repo"
    (dest / "precious").mkdir(parents=True)
    (dest / "precious" / "data").write_text("keep me")
    with pytest.raises(DestinationError, match="not written by conch pull"):
        pull(artifact.uri, artifact.sha256, dest, PullOptions(config=FILES))
    assert (dest / "precious" / "data").read_text() == "keep me"
    assert sorted(p.name for p in models.iterdir()) == ["repo"]


def test_empty_existing_destination_is_filled(artifact: Artifact, models: Path) -> None:
    dest = models / "repo"
    dest.mkdir()
    pull(artifact.uri, artifact.sha256, dest, PullOptions(config=FILES))
    assert read_tree(dest) == MODEL_TREE


def test_wrong_digest_leaves_nothing_behind(artifact: Artifact, tmp_path: Path) -> None:
    dest = tmp_path / "models" / "nested" / "repo"  # parents it creates are removed too
    wrong = "0" * 64
    with pytest.raises(DigestMismatch) as caught:
        pull(artifact.uri, wrong, dest, PullOptions(config=FILES))
    assert caught.value.reason == "DigestMismatch"
    assert wrong in caught.value.message  # what the user wrote
    assert artifact.sha256 not in caught.value.message  # never what was read: no oracle
    assert "does not match" in caught.value.message
    assert not (tmp_path / "models").exists()


def test_file_uri_needs_allow_file(artifact: Artifact, models: Path) -> None:
    with pytest.raises(UnsupportedSource, match="needs --allow-file") as caught:
        pull(artifact.uri, artifact.sha256, models / "repo")
    assert caught.value.reason == "UnsupportedSource"
    assert "sandbox and tests" in caught.value.message
    assert_left_nothing(models, models / "repo")
    # refused before reading: even a no-op pull over an installed tree is refused
    pull(artifact.uri, artifact.sha256, models / "repo", PullOptions(config=FILES))
    with pytest.raises(UnsupportedSource, match="needs --allow-file"):
        pull(artifact.uri, artifact.sha256, models / "repo")


def test_pvc_needs_no_allow_file(artifact: Artifact, models: Path, pvc_root: Path) -> None:
    config = SourceConfig(pvc_root=pvc_root, allow_file=False)
    pull(
        "pvc://model-store/mlp/1.tgz", artifact.sha256, models / "repo", PullOptions(config=config)
    )
    assert read_tree(models / "repo") == MODEL_TREE


def test_digest_is_checked_before_anything_is_unpacked(models: Path, tmp_path: Path) -> None:
    art = make_artifact(tmp_path / "a", pack_members([Member("../evil", data=b"pwned")]))
    with pytest.raises(DigestMismatch):  # not HostileArchive: the archive was never opened
        pull(art.uri, "e" * 64, models / "repo", PullOptions(config=FILES))
    assert_left_nothing(models, models / "repo")


def test_missing_file_is_not_found(models: Path, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no such file"):
        pull(
            (tmp_path / "absent.tgz").as_uri(), "a" * 64, models / "repo", PullOptions(config=FILES)
        )
    assert_left_nothing(models, models / "repo")


def test_a_fifo_source_is_refused_without_hanging(models: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.tgz"
    os.mkfifo(fifo)
    with pytest.raises(UnsupportedSource, match="not a regular file"):
        pull(fifo.as_uri(), "a" * 64, models / "repo", PullOptions(config=FILES))
    assert_left_nothing(models, models / "repo")


HOSTILE = {
    "dotdot": [Member("mlp/config.pbtxt", data=b"x"), Member("../evil", data=b"pwned")],
    "nested-dotdot": [Member("mlp/../../evil", data=b"pwned")],
    "absolute": [Member("/etc/passwd", data=b"root::0:0::/:/bin/sh\n")],
    "symlink-out": [Member("mlp", tarfile.SYMTYPE, linkname="/etc")],
    "symlink-then-write": [
        Member("mlp", tarfile.SYMTYPE, linkname="../../outside"),
        Member("mlp/evil", data=b"pwned"),
    ],
    "relative-symlink": [Member("mlp/latest", tarfile.SYMTYPE, linkname="1")],
    "hardlink-out": [Member("mlp/passwd", tarfile.LNKTYPE, linkname="../../../etc/passwd")],
    "char-device": [Member("mlp/mem", tarfile.CHRTYPE)],
    "block-device": [Member("mlp/sda", tarfile.BLKTYPE)],
    "fifo": [Member("mlp/pipe", tarfile.FIFOTYPE)],
    "duplicate": [Member("mlp/a", data=b"1"), Member("mlp/a", data=b"2")],
    "file-over-dir": [Member("mlp", data=b"file"), Member("mlp/x", data=b"under a file")],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_is_refused_and_leaves_nothing(
    case: str, models: Path, tmp_path: Path
) -> None:
    art = make_artifact(tmp_path / "a", pack_members(HOSTILE[case]))
    dest = models / "repo"
    with pytest.raises(HostileArchive) as caught:
        pull(art.uri, art.sha256, dest, PullOptions(config=FILES))
    assert caught.value.reason == "HostileArchive"
    assert "member" in caught.value.message
    assert_left_nothing(models, dest)
    assert not (tmp_path / "evil").exists() and not (tmp_path / "outside").exists()


def test_oversize_artifact_is_refused_before_reading(artifact: Artifact, models: Path) -> None:
    with pytest.raises(TooLarge, match="over the limit") as caught:
        pull(
            artifact.uri,
            artifact.sha256,
            models / "repo",
            PullOptions(max_bytes=len(artifact.data) - 1, config=FILES),
        )
    assert caught.value.reason == "ArtifactTooLarge"
    assert_left_nothing(models, models / "repo")


def test_gzip_bomb_is_stopped_at_the_unpacked_limit(models: Path, tmp_path: Path) -> None:
    art = make_artifact(tmp_path / "a", zero_bomb(64 << 20))
    assert len(art.data) < 1 << 20  # a small download...
    with pytest.raises(TooLarge, match="unpacked size would exceed") as caught:
        pull(
            art.uri, art.sha256, models / "repo", PullOptions(max_bytes=1 << 20, config=FILES)
        )  # ...over 2 MiB unpacked
    assert caught.value.reason == "ArtifactTooLarge"
    assert_left_nothing(models, models / "repo")


def test_a_bomb_within_the_size_limits_is_stopped_by_the_ratio_cap(
    models: Path, tmp_path: Path
) -> None:
    art = make_artifact(tmp_path / "a", zero_bomb(64 << 20))  # 64 MiB, far under 40 GiB
    with pytest.raises(TooLarge, match="100 times the") as caught:
        pull(art.uri, art.sha256, models / "repo", PullOptions(config=FILES))
    assert f"{len(art.data)}-byte artifact" in caught.value.message
    assert "--max-ratio" in caught.value.message
    assert_left_nothing(models, models / "repo")
    with pytest.raises(InvalidArchive, match=r"no config\.pbtxt"):  # unpacked: cap raised
        pull(art.uri, art.sha256, models / "repo", PullOptions(config=FILES, max_ratio=10_000))


def test_too_many_members_is_refused(models: Path, tmp_path: Path) -> None:
    members = [Member(f"mlp/f{i}", data=b"x") for i in range(50)]
    art = make_artifact(tmp_path / "a", pack_members(members))
    with pytest.raises(TooLarge, match="more than 20 members"):
        pull(art.uri, art.sha256, models / "repo", PullOptions(max_members=20, config=FILES))
    assert_left_nothing(models, models / "repo")


@pytest.mark.parametrize(
    "data", [b"this is not a tar archive at all" * 40, b"\x1f\x8b\x08\x00" + b"\x00" * 600]
)
def test_garbage_is_an_invalid_archive(data: bytes, models: Path, tmp_path: Path) -> None:
    art = make_artifact(tmp_path / "a", data)
    with pytest.raises(InvalidArchive) as caught:
        pull(art.uri, art.sha256, models / "repo", PullOptions(config=FILES))
    assert caught.value.reason == "InvalidArchive"
    assert_left_nothing(models, models / "repo")


def test_truncated_archive_is_invalid(artifact: Artifact, models: Path, tmp_path: Path) -> None:
    art = make_artifact(tmp_path / "cut", artifact.data[: len(artifact.data) // 2])
    with pytest.raises(PullError) as caught:
        pull(art.uri, art.sha256, models / "repo", PullOptions(config=FILES))
    assert type(caught.value) is InvalidArchive
    assert_left_nothing(models, models / "repo")


NOT_A_REPOSITORY = {
    "empty": ([], "holds no model"),
    "root-only": ([Member(".", tarfile.DIRTYPE)], "holds no model"),
    "files-only": ([Member("README", data=b"hi")], "holds no model"),
    "no-config": (
        [Member("mlp/1/model.py", data=b"x = 1\n")],
        "model folder 'mlp' has no config.pbtxt",
    ),
    "one-model-without-config": (
        [Member("a/config.pbtxt", data=b'backend: "python"\n'), Member("b/1/m.py", data=b"")],
        "model folder 'b' has no config.pbtxt",
    ),
    "garbage-config": (
        [Member("mlp/config.pbtxt", data=b"this is { not a model config")],
        "'mlp/config.pbtxt' is not a Triton model configuration",
    ),
    "unknown-field": (
        [Member("mlp/config.pbtxt", data=b"nmae: 'x'\n")],
        "is not a Triton model configuration",
    ),
    "not-utf8": (
        [Member("mlp/config.pbtxt", data=b"name: '\xff\xfe'\n")],
        "is not a Triton model configuration",
    ),
}


@pytest.mark.parametrize("case", sorted(NOT_A_REPOSITORY))
def test_an_archive_that_is_no_model_repository_is_refused(
    case: str, models: Path, tmp_path: Path
) -> None:
    members, says = NOT_A_REPOSITORY[case]
    art = make_artifact(tmp_path / "a", pack_members(members))
    with pytest.raises(InvalidArchive, match=re.escape(says)) as caught:
        pull(art.uri, art.sha256, models / "repo", PullOptions(config=FILES))
    assert caught.value.reason == "InvalidArchive"
    assert "\n" not in caught.value.message
    assert_left_nothing(models, models / "repo")


# -- pvc:// ------------------------------------------------------------------------------------


@pytest.fixture
def pvc_root(tmp_path: Path, artifact: Artifact) -> Path:
    root = tmp_path / "pvc"
    claim = root / "model-store" / "mlp"
    claim.mkdir(parents=True)
    (claim / "1.tgz").write_bytes(artifact.data)
    (claim / "escape.tgz").symlink_to(artifact.path)  # points outside the claim
    return root


def test_pvc_pull(artifact: Artifact, models: Path, pvc_root: Path) -> None:
    config = SourceConfig(pvc_root=pvc_root)
    pull(
        "pvc://model-store/mlp/1.tgz", artifact.sha256, models / "repo", PullOptions(config=config)
    )
    assert read_tree(models / "repo") == MODEL_TREE


def test_pvc_symlink_out_of_the_claim_is_refused(
    artifact: Artifact, models: Path, pvc_root: Path
) -> None:
    config = SourceConfig(pvc_root=pvc_root)
    with pytest.raises(UnsupportedSource, match="outside the claim"):
        pull(
            "pvc://model-store/mlp/escape.tgz",
            artifact.sha256,
            models / "repo",
            PullOptions(config=config),
        )
    assert_left_nothing(models, models / "repo")


def test_pvc_claim_not_mounted(artifact: Artifact, models: Path, pvc_root: Path) -> None:
    config = SourceConfig(pvc_root=pvc_root)
    with pytest.raises(NotFound, match="'other' is not mounted"):
        pull("pvc://other/1.tgz", artifact.sha256, models / "repo", PullOptions(config=config))
    assert_left_nothing(models, models / "repo")


def test_marker_is_the_only_addition(artifact: Artifact, models: Path) -> None:
    dest = models / "repo"
    pull(artifact.uri, artifact.sha256, dest, PullOptions(config=FILES))
    added = set(read_tree(dest, skip=())) - set(MODEL_TREE)
    assert added == {MARKER}
