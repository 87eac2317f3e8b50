"""Pull from a real S3-compatible server (versitygw, built from source) on 127.0.0.1.

Credentials are used only for buckets (and an endpoint host) the admin listed; a loopback
HTTP server standing in as the endpoint shows what would have been sent otherwise.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from mypy_boto3_s3 import S3Client

from conch.dev.process import free_port
from conch.dev.s3 import S3Server
from conch_runtime.errors import (
    AccessDenied,
    CredentialsNotAllowed,
    DigestMismatch,
    NotFound,
    SourceUnavailable,
)
from conch_runtime.pull import PullOptions, pull
from conch_runtime.retry import RetryPolicy
from conch_runtime.sources import SourceConfig
from conch_runtime.uri import S3Source, parse_uri
from tests.runtime.conftest import Artifact
from tests.runtime.helpers import MODEL_TREE, LoopbackHTTP, Route, read_tree, serve_http

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)


def allowed(uri: str, endpoint: str, credentials: Path | None) -> SourceConfig:
    """A config that lets credentials reach `uri`'s bucket on `endpoint` (loopback)."""
    source = parse_uri(uri)
    assert isinstance(source, S3Source)
    return SourceConfig.from_env(
        s3_endpoint=endpoint,
        credentials_dir=credentials,
        credentials_hosts=[source.bucket, "127.0.0.1"],
    )


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
    config = allowed(uploaded, s3_server.endpoint, s3_credentials)
    result = pull(uploaded, artifact.sha256, models / "repo", PullOptions(config=config))
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
    config = allowed(uploaded, s3_server.endpoint, None)
    pull(uploaded, artifact.sha256, models / "repo", PullOptions(config=config))
    assert read_tree(models / "repo") == MODEL_TREE


def test_s3_missing_key_is_not_found(
    uploaded: str, artifact: Artifact, s3_server: S3Server, s3_credentials: Path, models: Path
) -> None:
    config = allowed(uploaded, s3_server.endpoint, s3_credentials)
    waits: list[float] = []
    with pytest.raises(NotFound, match="NoSuchKey") as caught:
        pull(
            uploaded.replace("1.tar.gz", "2.tar.gz"),
            artifact.sha256,
            models / "repo",
            PullOptions(config=config),
            sleep=waits.append,
        )
    assert caught.value.reason == "ArtifactNotFound"
    assert waits == []  # never retried
    assert list(models.iterdir()) == []


def test_s3_missing_bucket_is_not_found(
    artifact: Artifact, s3_server: S3Server, s3_credentials: Path, models: Path
) -> None:
    uri = "s3://no-such-bucket-here/a.tgz"
    config = allowed(uri, s3_server.endpoint, s3_credentials)
    with pytest.raises(NotFound, match="NoSuchBucket"):
        pull(uri, artifact.sha256, models / "repo", PullOptions(config=config))


def test_s3_wrong_secret_is_access_denied(
    uploaded: str, artifact: Artifact, s3_server: S3Server, tmp_path: Path, models: Path
) -> None:
    secret = tmp_path / "bad-secret"
    secret.mkdir()
    (secret / "AWS_ACCESS_KEY_ID").write_text(s3_server.access_key)
    (secret / "AWS_SECRET_ACCESS_KEY").write_text("not-the-secret")
    config = allowed(uploaded, s3_server.endpoint, secret)
    waits: list[float] = []
    with pytest.raises(AccessDenied, match="SignatureDoesNotMatch") as caught:
        pull(
            uploaded,
            artifact.sha256,
            models / "repo",
            PullOptions(config=config),
            sleep=waits.append,
        )
    assert caught.value.reason == "AccessDenied"
    assert waits == []
    assert list(models.iterdir()) == []


def test_s3_wrong_digest_leaves_nothing(
    uploaded: str, artifact: Artifact, s3_server: S3Server, s3_credentials: Path, models: Path
) -> None:
    config = allowed(uploaded, s3_server.endpoint, s3_credentials)
    with pytest.raises(DigestMismatch) as caught:
        pull(uploaded, "f" * 64, models / "repo", PullOptions(config=config))
    assert artifact.sha256 not in caught.value.message
    assert list(models.iterdir()) == []


def test_s3_endpoint_down_is_transient(
    artifact: Artifact, s3_credentials: Path, models: Path
) -> None:
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config = allowed("s3://bucket/a.tgz", down, s3_credentials)
    waits: list[float] = []
    with pytest.raises(SourceUnavailable, match="gave up after 3 attempts"):
        pull(
            "s3://bucket/a.tgz",
            artifact.sha256,
            models / "repo",
            PullOptions(config=config, retry=FAST),
            sleep=waits.append,
        )
    assert len(waits) == 2


# -- credentials go only where the admin allows ------------------------------------------------


@pytest.fixture
def endpoint(artifact: Artifact) -> Iterator[LoopbackHTTP]:
    """A loopback HTTP server posing as an S3 endpoint (path style): records every request."""
    yield from serve_http({"/models/m.tgz": Route(artifact.data)})


@pytest.mark.parametrize(
    ("hosts", "named"),
    [
        ([], "'models'"),
        (["127.0.0.1"], "'models'"),  # the endpoint alone is not enough
        (["models"], "'127.0.0.1'"),  # nor the bucket alone
        (["models", "127.0.0.2"], "'127.0.0.1'"),
    ],
)
def test_s3_credentials_refused_for_unlisted_targets_before_connecting(
    endpoint: LoopbackHTTP,
    artifact: Artifact,
    s3_credentials: Path,
    models: Path,
    hosts: list[str],
    named: str,
) -> None:
    config = SourceConfig.from_env(
        s3_endpoint=endpoint.url, credentials_dir=s3_credentials, credentials_hosts=hosts
    )
    with pytest.raises(CredentialsNotAllowed, match=named) as caught:
        pull("s3://models/m.tgz", artifact.sha256, models / "repo", PullOptions(config=config))
    assert caught.value.exit_code == 14
    assert endpoint.requests == []
    assert list(models.iterdir()) == []


def test_s3_environment_keys_count_as_credentials(
    endpoint: LoopbackHTTP,
    artifact: Artifact,
    s3_server: S3Server,
    models: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    config = SourceConfig.from_env(s3_endpoint=endpoint.url)
    with pytest.raises(CredentialsNotAllowed):
        pull("s3://models/m.tgz", artifact.sha256, models / "repo", PullOptions(config=config))
    assert endpoint.requests == []


def test_s3_an_http_token_is_no_credential_for_s3(
    endpoint: LoopbackHTTP, artifact: Artifact, models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONCH_HTTP_TOKEN", "s3cr3t")
    pull(
        "s3://models/m.tgz",
        artifact.sha256,
        models / "repo",
        PullOptions(config=allowed_none(endpoint)),
    )
    assert "s3cr3t" not in str(endpoint.requests)
    assert "Authorization" not in endpoint.requests[0][1]


def test_s3_ambient_identity_reaches_only_listed_buckets(
    endpoint: LoopbackHTTP,
    artifact: Artifact,
    models: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An identity botocore would find by itself (a shared credentials file here, the node's
    instance profile in a cluster) is not configured by us: an unlisted bucket is read with
    an unsigned request, a listed one with the identity."""
    shared = tmp_path / "aws-credentials"
    shared.write_text("[default]\naws_access_key_id = AMBIENTKEY\naws_secret_access_key = s\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(shared))

    pull(
        "s3://models/m.tgz",
        artifact.sha256,
        models / "a",
        PullOptions(config=allowed_none(endpoint)),
    )
    assert read_tree(models / "a") == MODEL_TREE
    [(path, headers)] = endpoint.requests
    assert path == "/models/m.tgz"
    assert "Authorization" not in headers and "AMBIENTKEY" not in str(headers)

    config = allowed("s3://models/m.tgz", endpoint.url, None)
    pull("s3://models/m.tgz", artifact.sha256, models / "b", PullOptions(config=config))
    assert "Credential=AMBIENTKEY/" in endpoint.requests[-1][1]["Authorization"]


def allowed_none(endpoint: LoopbackHTTP) -> SourceConfig:
    return SourceConfig.from_env(s3_endpoint=endpoint.url, credentials_hosts=["other-bucket"])
