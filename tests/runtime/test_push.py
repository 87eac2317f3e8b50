"""`conch push` to a real S3-compatible server (versitygw) on 127.0.0.1, then `conch pull`
of what the rewritten ModelVersion names: the round trip a sandbox pod makes."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import yaml
from mypy_boto3_s3 import S3Client

from conch.dev.s3 import S3Server
from conch_runtime.__main__ import main
from conch_runtime.manifest import Manifest
from conch_runtime.modelversion import MODELVERSION, dump_yaml
from conch_runtime.pull import PullOptions, pull
from conch_runtime.push import push
from conch_runtime.sources import SourceConfig
from conch_runtime.tool_errors import InvalidData, PushFailed
from tests.runtime.conftest import Artifact
from tests.runtime.helpers import MODEL_TREE, read_tree


@pytest.fixture
def package(tmp_path: Path, artifact: Artifact) -> Path:
    """A package directory as `conch package` writes it: manifest, artifact, ModelVersion."""
    out = tmp_path / "pkg"
    out.mkdir()
    (out / "mlp-1.tar.gz").write_bytes(artifact.data)
    Manifest(
        model="mlp",
        version="1",
        format="python",
        model_file="mlp/1/model.pt2",
        signature={},
        artifact="mlp-1.tar.gz",
        artifact_sha256=artifact.sha256,
        artifact_bytes=len(artifact.data),
    ).write(out)
    source = {"uri": (out / "mlp-1.tar.gz").as_uri(), "sha256": artifact.sha256}
    dump_yaml({"kind": "ModelVersion", "spec": {"source": source}}, out / MODELVERSION)
    return out


@pytest.fixture
def bucket(s3_client: S3Client) -> str:
    name = f"conch-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name


def test_push_then_pull_round_trips(
    package: Path,
    bucket: str,
    artifact: Artifact,
    s3_client: S3Client,
    s3_server: S3Server,
    s3_credentials: Path,
    models: Path,
) -> None:
    result = push(package, f"s3://{bucket}/team/", credentials_secret="models", client=s3_client)
    assert result.uri == f"s3://{bucket}/team/mlp-1.tar.gz"
    source = yaml.safe_load((package / MODELVERSION).read_text())["spec"]["source"]
    assert source == {
        "uri": result.uri,
        "sha256": artifact.sha256,
        "credentialsSecretRef": {"name": "models"},
    }
    config = SourceConfig.from_env(
        s3_endpoint=s3_server.endpoint,
        credentials_dir=s3_credentials,
        credentials_hosts=[bucket, "127.0.0.1"],
    )
    pull(source["uri"], source["sha256"], models / "repo", PullOptions(config=config))
    assert read_tree(models / "repo") == MODEL_TREE


def test_push_from_the_command_line(
    package: Path,
    bucket: str,
    s3_server: S3Server,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    assert (
        main(["push", str(package), "--to", f"s3://{bucket}", "--endpoint", s3_server.endpoint])
        == 0
    )
    uri = yaml.safe_load((package / MODELVERSION).read_text())["spec"]["source"]["uri"]
    assert uri == f"s3://{bucket}/mlp-1.tar.gz"

    # a bucket that does not exist: a clear failure, and the ModelVersion is left as it was
    code = main(
        ["push", str(package), "--to", "s3://no-such-bucket-x", "--endpoint", s3_server.endpoint]
    )
    assert code == PushFailed.exit_code
    assert "conch push: PushFailed:" in capsys.readouterr().err
    assert yaml.safe_load((package / MODELVERSION).read_text())["spec"]["source"]["uri"] == uri


def test_a_changed_artifact_is_never_uploaded(
    package: Path, bucket: str, s3_client: S3Client
) -> None:
    (package / "mlp-1.tar.gz").write_bytes(b"not what was packaged")
    with pytest.raises(InvalidData, match="not the artifact the package recorded"):
        push(package, f"s3://{bucket}", client=s3_client)
    assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


@pytest.mark.parametrize(
    "to", ["https://host/x", "s3://", "s3://Bad_Bucket", "s3://bucket/../x", "s3://bucket?x=1"]
)
def test_a_bad_destination_is_refused(package: Path, to: str) -> None:
    with pytest.raises(InvalidData, match="--to"):
        push(package, to)


def test_the_conch_command_offers_push(capsys: pytest.CaptureFixture[str]) -> None:
    from conch.cli import main as conch

    with pytest.raises(SystemExit) as done:
        conch(["push", "--help"])
    assert done.value.code == 0
    assert "--to s3://BUCKET[/PREFIX]" in capsys.readouterr().out
