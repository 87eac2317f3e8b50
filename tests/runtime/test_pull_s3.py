"""Pull from a real S3-compatible server (versitygw, built from source) on 127.0.0.1."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from mypy_boto3_s3 import S3Client

from conch_runtime.errors import AccessDenied, DigestMismatch, NotFound, SourceUnavailable
from conch_runtime.pull import pull
from conch_runtime.retry import RetryPolicy
from conch_runtime.sources import SourceConfig
from tests.runtime.conftest import Artifact
from tests.runtime.helpers import MODEL_TREE, read_tree
from tests.runtime.s3server import S3Server, free_port

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)


@pytest.fixture
def uploaded(s3_client: S3Client, artifact: Artifact) -> str:
    """A fresh bucket holding the artifact; returns its s3:// URI."""
    bucket = f"conch-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=bucket)
    s3_client.put_object(Bucket=bucket, Key="models/mlp/1.tar.gz", Body=artifact.data)
    return f"s3://{bucket}/models/mlp/1.tar.gz"


def test_s3_pull_with_a_mounted_secret(
    uploaded: str, artifact: Artifact, s3_server: S3Server, s3_credentials: Path, models: Path
) -> None:
    config = SourceConfig.from_env(s3_endpoint=s3_server.endpoint, credentials_dir=s3_credentials)
    result = pull(uploaded, artifact.sha256, models / "repo", config=config)
    assert read_tree(models / "repo") == MODEL_TREE
    assert (result.attempts, result.downloaded_bytes) == (1, len(artifact.data))


def test_s3_pull_with_environment_credentials_and_endpoint(
    uploaded: str,
    artifact: Artifact,
    s3_server: S3Server,
    models: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    pull(uploaded, artifact.sha256, models / "repo", config=SourceConfig.from_env())
    assert read_tree(models / "repo") == MODEL_TREE


def test_s3_missing_key_is_not_found(
    uploaded: str, artifact: Artifact, s3_server: S3Server, s3_credentials: Path, models: Path
) -> None:
    config = SourceConfig.from_env(s3_endpoint=s3_server.endpoint, credentials_dir=s3_credentials)
    waits: list[float] = []
    with pytest.raises(NotFound, match="NoSuchKey") as caught:
        pull(
            uploaded.replace("1.tar.gz", "2.tar.gz"),
            artifact.sha256,
            models / "repo",
            config=config,
            sleep=waits.append,
        )
    assert caught.value.reason == "ArtifactNotFound"
    assert waits == []  # never retried
    assert list(models.iterdir()) == []


def test_s3_missing_bucket_is_not_found(
    artifact: Artifact, s3_server: S3Server, s3_credentials: Path, models: Path
) -> None:
    config = SourceConfig.from_env(s3_endpoint=s3_server.endpoint, credentials_dir=s3_credentials)
    with pytest.raises(NotFound, match="NoSuchBucket"):
        pull("s3://no-such-bucket-here/a.tgz", artifact.sha256, models / "repo", config=config)


def test_s3_wrong_secret_is_access_denied(
    uploaded: str, artifact: Artifact, s3_server: S3Server, tmp_path: Path, models: Path
) -> None:
    secret = tmp_path / "bad-secret"
    secret.mkdir()
    (secret / "AWS_ACCESS_KEY_ID").write_text(s3_server.access_key)
    (secret / "AWS_SECRET_ACCESS_KEY").write_text("not-the-secret")
    config = SourceConfig.from_env(s3_endpoint=s3_server.endpoint, credentials_dir=secret)
    waits: list[float] = []
    with pytest.raises(AccessDenied, match="SignatureDoesNotMatch") as caught:
        pull(uploaded, artifact.sha256, models / "repo", config=config, sleep=waits.append)
    assert caught.value.reason == "AccessDenied"
    assert waits == []
    assert list(models.iterdir()) == []


def test_s3_wrong_digest_leaves_nothing(
    uploaded: str, artifact: Artifact, s3_server: S3Server, s3_credentials: Path, models: Path
) -> None:
    config = SourceConfig.from_env(s3_endpoint=s3_server.endpoint, credentials_dir=s3_credentials)
    with pytest.raises(DigestMismatch):
        pull(uploaded, "f" * 64, models / "repo", config=config)
    assert list(models.iterdir()) == []


def test_s3_endpoint_down_is_transient(
    artifact: Artifact, s3_credentials: Path, models: Path
) -> None:
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config = SourceConfig.from_env(s3_endpoint=down, credentials_dir=s3_credentials)
    waits: list[float] = []
    with pytest.raises(SourceUnavailable, match="gave up after 3 attempts"):
        pull(
            "s3://bucket/a.tgz",
            artifact.sha256,
            models / "repo",
            config=config,
            retry=FAST,
            sleep=waits.append,
        )
    assert len(waits) == 2
