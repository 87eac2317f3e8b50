"""`push`: upload a package's artifact to S3 and point its ModelVersion at it.

    conch push PKG --to s3://BUCKET/PREFIX [--endpoint URL] [--credentials-secret NAME]

The artifact is checked against the digest the package recorded before a byte leaves (a
package changed after `package` is refused), streamed up (boto3's multipart transfer,
never whole in memory), and its size read back from the store. Only then is
`PKG/modelversion.yaml` rewritten, atomically, with the artifact's `s3://` URI (and the
credentials Secret the pods will pull with), so `kubectl apply -f PKG/modelversion.yaml`
always names bytes that are really there. Credentials come from boto3's usual chain
(`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, a profile, ...).
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import yaml

from conch_runtime.manifest import Manifest, sha256_file
from conch_runtime.modelversion import MODELVERSION, dump_yaml
from conch_runtime.tool_errors import InvalidData, PushFailed

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["PushResult", "push"]

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class PushResult:
    uri: str
    sha256: str
    size_bytes: int
    modelversion: Path


def _destination(to: str, artifact: str) -> tuple[str, str]:
    """(bucket, key) for `artifact` under `s3://BUCKET[/PREFIX]`."""
    parts = urlsplit(to)
    if parts.scheme != "s3" or not _BUCKET.match(parts.netloc) or parts.query or parts.fragment:
        raise InvalidData(f"--to {to!r}: expected s3://BUCKET or s3://BUCKET/PREFIX")
    prefix = parts.path.strip("/")
    if any(p in ("", ".", "..") for p in prefix.split("/")) and prefix:
        raise InvalidData(f"--to {to!r}: the prefix must not contain empty, '.' or '..' parts")
    return parts.netloc, f"{prefix}/{artifact}" if prefix else artifact


def _client(endpoint: str | None) -> S3Client:
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"max_attempts": 5, "mode": "standard"}, s3={"addressing_style": "path"}
    )
    return boto3.client("s3", endpoint_url=endpoint, config=config)


def push(
    package: Path,
    to: str,
    *,
    endpoint: str | None = None,
    credentials_secret: str | None = None,
    client: S3Client | None = None,
) -> PushResult:
    """Upload `package`'s artifact under `to` and rewrite its modelversion.yaml to match."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    manifest = Manifest.read(package)
    artifact = package / manifest.artifact
    if not artifact.is_file() or sha256_file(artifact) != manifest.artifact_sha256:
        raise InvalidData(
            f"{artifact}: missing, or not the artifact the package recorded; package again"
        )
    bucket, key = _destination(to, manifest.artifact)
    s3 = client or _client(endpoint)
    try:
        s3.upload_file(str(artifact), bucket, key)
        stored = s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
    except (Boto3Error, BotoCoreError, ClientError) as error:
        raise PushFailed(f"uploading to s3://{bucket}/{key}: {error}") from None
    if stored != manifest.artifact_bytes:
        raise PushFailed(
            f"s3://{bucket}/{key} holds {stored} bytes, the artifact has {manifest.artifact_bytes}"
        )
    uri = f"s3://{bucket}/{key}"
    path = package / MODELVERSION
    modelversion: dict[str, Any] = yaml.safe_load(path.read_text())
    source = modelversion["spec"]["source"]
    source["uri"] = uri
    if credentials_secret:
        source["credentialsSecretRef"] = {"name": credentials_secret}
    handle, staging = tempfile.mkstemp(dir=package, prefix=f".{MODELVERSION}.")
    os.close(handle)
    dump_yaml(modelversion, Path(staging))
    os.replace(staging, path)
    return PushResult(uri, manifest.artifact_sha256, stored, path)
