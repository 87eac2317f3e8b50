"""`python -m conch_runtime pull` as the init container runs it: a real child process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

from mypy_boto3_s3 import S3Client

from conch.dev.s3 import S3Server
from conch_runtime.errors import (
    CredentialsNotAllowed,
    DigestMismatch,
    HostileArchive,
    InvalidArgument,
    NotFound,
    UnsupportedSource,
)
from tests.runtime.conftest import Artifact, make_artifact
from tests.runtime.helpers import (
    MODEL_TREE,
    Member,
    Route,
    pack_dir,
    pack_members,
    read_tree,
    serve_http,
    sha256,
    write_tree,
)
from tests.support import eventually

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, allow_file: bool = True) -> subprocess.CompletedProcess[str]:
    """`pull` as a child process; file:// URIs allowed (the tests' artifacts) unless told."""
    return subprocess.run(
        [sys.executable, "-m", "conch_runtime", "pull", *args, *["--allow-file"][:allow_file]],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "TERM": "dumb"},
        check=False,
    )


def test_cli_pull_file(artifact: Artifact, models: Path) -> None:
    dest = models / "repo"
    done = run_cli("--uri", artifact.uri, "--sha256", artifact.sha256, "--dest", str(dest))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # quiet when stderr is not a terminal: no progress bar
    assert read_tree(dest) == MODEL_TREE
    again = run_cli("--uri", artifact.uri, "--sha256", artifact.sha256, "--dest", str(dest))
    assert again.returncode == 0
    assert "already holds" in again.stdout


def test_cli_pull_s3(
    artifact: Artifact, s3_server: S3Server, s3_credentials: Path, models: Path, s3_client: S3Client
) -> None:
    s3_client.create_bucket(Bucket="conch-cli")
    s3_client.put_object(Bucket="conch-cli", Key="m.tgz", Body=artifact.data)
    dest = models / "repo"
    done = run_cli(
        *("--uri", "s3://conch-cli/m.tgz", "--sha256", artifact.sha256, "--dest", str(dest)),
        *("--s3-endpoint", s3_server.endpoint, "--credentials-dir", str(s3_credentials)),
        *("--credentials-host", "conch-cli", "--credentials-host", "127.0.0.1"),
    )
    assert done.returncode == 0, done.stderr
    assert read_tree(dest) == MODEL_TREE


def test_cli_wrong_digest(artifact: Artifact, models: Path) -> None:
    wrong = "ab" * 32
    done = run_cli("--uri", artifact.uri, "--sha256", wrong, "--dest", str(models / "repo"))
    assert done.returncode == DigestMismatch.exit_code == 9
    assert done.stderr.startswith("conch pull: DigestMismatch: ")
    assert done.stderr.count("\n") == 1 and wrong in done.stderr
    assert artifact.sha256 not in done.stderr + done.stdout  # never the digest of what was read
    assert done.stdout == ""
    assert list(models.iterdir()) == []


def test_cli_hostile_archive(models: Path, tmp_path: Path) -> None:
    art = make_artifact(tmp_path / "a", pack_members([Member("../evil", data=b"x")]))
    done = run_cli("--uri", art.uri, "--sha256", art.sha256, "--dest", str(models / "repo"))
    assert done.returncode == HostileArchive.exit_code
    assert (
        done.stderr
        == "conch pull: HostileArchive: member '../evil': '..' component escapes the destination\n"
    )
    assert list(models.iterdir()) == [] and not (tmp_path / "evil").exists()


def test_cli_not_found(models: Path, tmp_path: Path) -> None:
    uri = (tmp_path / "absent.tgz").as_uri()
    done = run_cli("--uri", uri, "--sha256", "1" * 64, "--dest", str(models / "repo"))
    assert done.returncode == NotFound.exit_code
    assert done.stderr.startswith(f"conch pull: ArtifactNotFound: {uri}: ")


def test_cli_file_needs_allow_file(artifact: Artifact, models: Path) -> None:
    args = ("--uri", artifact.uri, "--sha256", artifact.sha256, "--dest", str(models / "repo"))
    done = run_cli(*args, allow_file=False)
    assert done.returncode == UnsupportedSource.exit_code == 4
    assert done.stderr.startswith("conch pull: UnsupportedSource: ")
    assert "needs --allow-file" in done.stderr
    assert list(models.iterdir()) == []


def test_cli_credentials_for_an_unlisted_host_exit_14(models: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "token").write_text("s3cr3t\n")
    uri = "http://127.0.0.2:9/model.tgz"  # refused before any connection is tried
    done = run_cli(
        *("--uri", uri, "--sha256", "1" * 64, "--dest", str(models / "repo")),
        *("--credentials-dir", str(secret), "--credentials-host", "127.0.0.1"),
    )
    assert done.returncode == CredentialsNotAllowed.exit_code == 14
    assert done.stderr.startswith(f"conch pull: CredentialsNotAllowed: {uri}: ")
    assert "s3cr3t" not in done.stderr
    assert list(models.iterdir()) == []


def test_cli_credentials_host_lets_the_token_through(
    artifact: Artifact, models: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "token").write_text("s3cr3t\n")
    server = contextmanager(serve_http)({"/m.tgz": Route(artifact.data, token="s3cr3t")})
    with server as http:
        done = run_cli(
            *("--uri", f"{http.url}/m.tgz", "--sha256", artifact.sha256),
            *("--dest", str(models / "repo"), "--credentials-dir", str(secret)),
            *("--credentials-host", "example.com", "--credentials-host", "127.0.0.1"),
        )
    assert done.returncode == 0, done.stderr
    assert read_tree(models / "repo") == MODEL_TREE


def test_cli_malformed_credentials_host_exit_3(artifact: Artifact, models: Path) -> None:
    done = run_cli(
        *("--uri", artifact.uri, "--sha256", artifact.sha256, "--dest", str(models / "repo")),
        *("--credentials-host", "https://example.com/"),
    )
    assert done.returncode == InvalidArgument.exit_code == 3
    assert done.stderr.startswith("conch pull: InvalidArgument: --credentials-host ")


def test_cli_usage_error_is_exit_2(models: Path) -> None:
    done = run_cli("--uri", "file:///x.tgz", "--dest", str(models / "repo"))
    assert done.returncode == 2
    assert "--sha256" in done.stderr


def test_cli_sigterm_mid_download_leaves_nothing(models: Path, tmp_path: Path) -> None:
    # Incompressible and over two read chunks, so half of it reaches the staging file.
    tree = {"mlp/1/weights.bin": os.urandom(3 << 20)}
    art = make_artifact(tmp_path / "a", pack_dir(write_tree(tmp_path / "src", tree)))
    release = threading.Event()
    server = contextmanager(serve_http)({"/slow.tgz": Route(art.data, stall=release)})
    with server as http:
        args = ["--uri", f"{http.url}/slow.tgz", "--sha256", art.sha256]
        child = subprocess.Popen(
            [sys.executable, "-m", "conch_runtime", "pull", *args, "--dest", str(models / "repo")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )
        try:
            eventually(
                lambda: any(p.stat().st_size > 0 for p in models.glob(".repo.conch-pull-*/*")),
                timeout=30,
                what="a partial download in the staging directory",
            )
            os.kill(child.pid, signal.SIGTERM)
            assert child.wait(timeout=30) == 128 + signal.SIGTERM
            assert child.stderr is not None
            assert (
                child.stderr.read()
                == b"conch pull: Terminated: stopped by SIGTERM; nothing installed\n"
            )
        finally:
            release.set()
            if child.poll() is None:
                os.kill(child.pid, signal.SIGKILL)
                child.wait()
    assert list(models.iterdir()) == []


def test_pull_writes_serving_settings_into_config(tmp_path: Path) -> None:
    """The operator's serving settings reach Triton through the verified repository."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    config = 'name: "m"\nbackend: "python"\nmax_batch_size: 8\ninstance_group [{ count: 1, kind: KIND_CPU }]\n'
    src = write_tree(
        tmp_path / "src", {"m/config.pbtxt": config.encode(), "m/1/model.py": b"x = 1\n"}
    )
    artifact = tmp_path / "model.tar.gz"
    artifact.write_bytes(pack_dir(src))
    dest = tmp_path / "models" / "repository"
    done = subprocess.run(
        [
            sys.executable, "-m", "conch_runtime", "pull",
            "--uri", f"file://{artifact}", "--sha256", sha256(artifact.read_bytes()), "--allow-file",
            "--dest", str(dest),
            "--instance-count", "4", "--instance-kind", "KIND_GPU",
            "--max-queue-delay-us", "250", "--preferred-batch-size", "4", "--preferred-batch-size", "8",
        ],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    parsed = text_format.Parse((dest / "m" / "config.pbtxt").read_text(), mc.ModelConfig())
    (group,) = parsed.instance_group
    assert group.count == 4 and group.kind == mc.ModelInstanceGroup.KIND_GPU
    assert parsed.dynamic_batching.max_queue_delay_microseconds == 250
    assert list(parsed.dynamic_batching.preferred_batch_size) == [4, 8]
    assert parsed.max_batch_size == 8  # what the artifact says about the model is kept
