"""Fixtures for the runtime's pull tests: artifacts, a loopback HTTP server, a real S3 server."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import botocore.config
import pytest
from mypy_boto3_s3 import S3Client

from conch.dev.s3 import REGION, S3Server, ensure_versitygw, start_versitygw
from tests.runtime.helpers import MODEL_TREE, pack_dir, sha256, write_tree

_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
_AWS_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "CONCH_HTTP_TOKEN",
)


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Hermetic environment: no proxies, no ambient AWS identity, and never the EC2 metadata
    address (botocore's credential chain would otherwise try it when a test has no keys)."""
    for name in (*_PROXY_VARS, *_AWS_VARS):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@dataclass(frozen=True)
class Artifact:
    """A packed model repository: the archive on disk, its digest, and the tree it holds."""

    path: Path
    data: bytes
    sha256: str
    tree: dict[str, bytes]

    @property
    def uri(self) -> str:
        return self.path.as_uri()


def make_artifact(directory: Path, data: bytes, tree: dict[str, bytes] | None = None) -> Artifact:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{sha256(data)[:12]}.tar.gz"
    path.write_bytes(data)
    return Artifact(path, data, sha256(data), tree or {})


@pytest.fixture
def artifact(tmp_path: Path) -> Artifact:
    """The honest model repository MODEL_TREE, packed with gzip."""
    src = write_tree(tmp_path / "src", MODEL_TREE)
    return make_artifact(tmp_path / "artifacts", pack_dir(src), MODEL_TREE)


@pytest.fixture
def models(tmp_path: Path) -> Path:
    """An empty directory standing in for the pod's model volume; dest goes inside it."""
    path = tmp_path / "models"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = start_versitygw(ensure_versitygw(), tmp_path_factory.mktemp("versitygw"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_client(s3_server: S3Server) -> S3Client:
    return boto3.session.Session().client(
        "s3",
        endpoint_url=s3_server.endpoint,
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key=s3_server.secret_key,
        region_name=REGION,
        config=botocore.config.Config(s3={"addressing_style": "path"}),
    )


@pytest.fixture
def s3_credentials(tmp_path: Path, s3_server: S3Server) -> Path:
    """A directory shaped like a mounted Secret holding the server's root keys."""
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "AWS_ACCESS_KEY_ID").write_text(s3_server.access_key + "\n")
    (secret / "AWS_SECRET_ACCESS_KEY").write_text(s3_server.secret_key + "\n")
    return secret
