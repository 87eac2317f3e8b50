"""Fetchers: open a parsed source as a stream of bytes, one function per scheme.

Before opening anything, `open_source` asks `conch_runtime.access` whether the source is
allowed and whether credentials may go with it; a fetcher told "no" sends none at all.

Each fetcher translates its library's errors into the `conch_runtime.errors` tree here, at
the boundary, including errors raised while the body is being read: 404-like answers become
NotFound, refused credentials AccessDenied, and only connection trouble, 5xx, 429 and
throttling become the retried SourceUnavailable. Nothing here hashes, limits or unpacks.
"""

from __future__ import annotations

import contextlib
import email.utils
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import boto3
import botocore
import botocore.config
import botocore.exceptions
import httpx
import urllib3.exceptions

from conch_runtime.access import HostPattern, Origin, authorize, origin_of
from conch_runtime.errors import (
    AccessDenied,
    InvalidArgument,
    NotFound,
    PullError,
    SourceRejected,
    SourceUnavailable,
    UnsupportedSource,
)
from conch_runtime.pull_contract import PVC_ROOT, claim_mount
from conch_runtime.uri import FileSource, HttpSource, PvcSource, S3Source, Source

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["CHUNK", "Body", "SourceConfig", "bearer_hook", "check_access", "open_source"]

CHUNK = 1 << 20
DEFAULT_PVC_ROOT = Path(PVC_ROOT)
TOKEN_ENV = "CONCH_HTTP_TOKEN"
"""Environment variable holding a bearer token for http(s) sources."""
TOKEN_FILE = "token"
"""File name of a bearer token inside the credentials directory (a mounted Secret)."""
S3_CREDENTIAL_FILES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
AWS_CREDENTIAL_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)
"""Environment variables through which botocore would find an identity on its own."""

_NOT_FOUND_CODES = {"NoSuchKey", "NoSuchBucket", "NotFound", "404"}
_DENIED_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "AllAccessDisabled",
    "AccountProblem",
    "403",
}
_TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "503",
    "500",
}


@dataclass(frozen=True)
class SourceConfig:
    """Where credentials and mounts are, and the admin's policy: all a fetcher needs but the URI."""

    s3_endpoint: str | None = None
    credentials_dir: Path | None = None
    pvc_root: Path = DEFAULT_PVC_ROOT
    http_token: str | None = None
    timeout: float = 30.0
    """Seconds to wait to connect and between two reads; not a limit on the whole download."""
    credentials_hosts: tuple[HostPattern, ...] = ()
    """Hosts and buckets that may receive credentials (`conch_runtime.access`)."""
    allow_file: bool = False
    """Whether file:// URIs may be read (the sandbox and tests only)."""
    env_credentials: bool = False
    """Whether the environment holds an AWS identity that botocore would use by itself."""

    def has_credentials(self, source: Source) -> bool:
        """Whether something would authenticate us to `source`: a mounted Secret for any
        remote source, else a token for http(s) or an AWS identity in the environment for s3."""
        match source:
            case HttpSource():
                return self.credentials_dir is not None or bool(self.http_token)
            case S3Source():
                return self.credentials_dir is not None or self.env_credentials
            case _:
                return False

    @classmethod
    def from_env(
        cls,
        *,
        s3_endpoint: str | None = None,
        credentials_dir: Path | None = None,
        pvc_root: Path | None = None,
        credentials_hosts: Iterable[str] = (),
        allow_file: bool = False,
    ) -> SourceConfig:
        """Fill what the caller left out from the environment, as the init container sees it."""
        endpoint = (
            s3_endpoint
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
            or None
        )
        token = _read_secret(credentials_dir, TOKEN_FILE) or os.environ.get(TOKEN_ENV) or None
        return cls(
            endpoint,
            credentials_dir,
            pvc_root or DEFAULT_PVC_ROOT,
            token,
            credentials_hosts=tuple(HostPattern.parse(h) for h in credentials_hosts),
            allow_file=allow_file,
            env_credentials=any(os.environ.get(name) for name in AWS_CREDENTIAL_ENV),
        )


@dataclass
class Body:
    """An open artifact: its bytes in chunks, and its length when the source said it."""

    chunks: Iterator[bytes]
    length: int | None


def check_access(source: Source, uri: str, config: SourceConfig) -> bool:
    """Refuse what the admin's policy forbids; return whether credentials may be sent."""
    return authorize(
        source,
        uri,
        allow_file=config.allow_file,
        credentials_hosts=config.credentials_hosts,
        has_credentials=config.has_credentials(source),
        s3_endpoint=config.s3_endpoint,
    )


def open_source(source: Source, uri: str, config: SourceConfig) -> AbstractContextManager[Body]:
    """Open `source` for one read from the start; `uri` is only used in messages."""
    use_credentials = check_access(source, uri, config)
    match source:
        case FileSource(path):
            return _open_local(Path(path), uri)
        case PvcSource():
            return _open_local(_pvc_path(source, uri, config.pvc_root), uri)
        case HttpSource(url):
            return _open_http(url, uri, config, config.http_token if use_credentials else None)
        case S3Source():
            return _open_s3(source, uri, config, use_credentials)


def _read_secret(directory: Path | None, name: str) -> str | None:
    """One value of a mounted Secret (a file per key), stripped; None when absent."""
    if directory is None:
        return None
    try:
        return (directory / name).read_text().strip() or None
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise AccessDenied(f"cannot read credential {name} in {directory}: {exc}") from None


# -- local files and PersistentVolumeClaims ---------------------------------------------------


def _pvc_path(source: PvcSource, uri: str, root: Path) -> Path:
    """The file's path under the claim's mount, refusing symlinks that lead out of it."""
    base = Path(claim_mount(source.claim, str(root)))
    if not base.is_dir():
        raise NotFound(f"{uri}: claim {source.claim!r} is not mounted at {base}")
    target = (base / source.path).resolve()
    if not target.is_relative_to(base.resolve()):
        raise UnsupportedSource(f"{uri}: resolves to {target}, outside the claim's mount {base}")
    return target


@contextmanager
def _open_local(path: Path, uri: str) -> Iterator[Body]:
    # O_NONBLOCK so a FIFO at `path` cannot hang us before we see it is not a regular file.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise NotFound(f"{uri}: no such file {path}") from None
    except PermissionError:
        raise AccessDenied(f"{uri}: permission denied reading {path}") from None
    except OSError as exc:
        raise SourceUnavailable(f"{uri}: cannot open {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsupportedSource(f"{uri}: {path} is not a regular file")
        os.set_blocking(fd, True)
        yield Body(_read_local(handle, uri), info.st_size)


def _read_local(handle: BinaryIO, uri: str) -> Iterator[bytes]:
    while True:
        try:
            chunk = handle.read(CHUNK)
        except OSError as exc:
            raise SourceUnavailable(f"{uri}: read failed: {exc.strerror or exc}") from None
        if not chunk:
            return
        yield chunk


# -- http(s) ----------------------------------------------------------------------------------


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), if it parses."""
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    with contextlib.suppress(TypeError, ValueError, IndexError):
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    return None


def http_status_error(status: int, uri: str, retry_after: str | None = None) -> PullError | None:
    """The pull error an HTTP status means, or None for success. Pure; tested as a table."""
    if 200 <= status < 300:
        return None
    if status in (404, 410):
        return NotFound(f"{uri}: HTTP {status}: the artifact does not exist")
    if status in (401, 403, 407):
        return AccessDenied(f"{uri}: HTTP {status}: access denied")
    if status in (408, 425, 429) or status >= 500:
        return SourceUnavailable(f"{uri}: HTTP {status}", retry_after=_retry_after(retry_after))
    return SourceRejected(f"{uri}: HTTP {status}: unexpected answer")


def bearer_hook(token: str | None, origin: Origin) -> Callable[[httpx.Request], None]:
    """A request hook that sends `token` to `origin` only, on every hop of a redirect chain.

    httpx would strip Authorization on a cross-origin redirect by itself, except from http
    to https on the same host; we do not rely on either: the header is set per request, and
    only when scheme, host and port are exactly those of the URI that the admin allowed.
    """

    def attach(request: httpx.Request) -> None:
        if token and origin_of(str(request.url)) == origin:
            request.headers["Authorization"] = f"Bearer {token}"
        else:
            request.headers.pop("Authorization", None)

    return attach


@contextmanager
def _open_http(url: str, uri: str, config: SourceConfig, token: str | None) -> Iterator[Body]:
    # identity: the digest is of the bytes as stored, so no transparent decompression.
    headers = {"Accept-Encoding": "identity"}
    timeout = httpx.Timeout(config.timeout)
    hooks = {"request": [bearer_hook(token, origin_of(url))]}
    try:
        with (
            httpx.Client(
                timeout=timeout, follow_redirects=True, headers=headers, event_hooks=hooks
            ) as client,
            client.stream("GET", url) as response,
        ):
            error = http_status_error(
                response.status_code, uri, response.headers.get("Retry-After")
            )
            if error is not None:
                raise error
            length = response.headers.get("Content-Length")
            size = int(length) if length and length.isdigit() else None
            yield Body(_read_http(response, uri), size)
    except (httpx.TooManyRedirects, httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise SourceRejected(f"{uri}: {exc}") from None
    except httpx.TransportError as exc:
        raise SourceUnavailable(f"{uri}: {type(exc).__name__}: {exc}") from None


def _read_http(response: httpx.Response, uri: str) -> Iterator[bytes]:
    try:
        # as the bytes arrive (no chunk size: httpx would hold them until one is full), so
        # the caller's deadline is checked even when a server sends a byte at a time
        yield from response.iter_raw()
    except httpx.TransportError as exc:
        raise SourceUnavailable(f"{uri}: download interrupted: {type(exc).__name__}") from None


# -- s3 ---------------------------------------------------------------------------------------


def _s3_client(config: SourceConfig, uri: str, use_credentials: bool) -> S3Client:
    """A client with our endpoint and botocore's own retries off (we retry).

    With `use_credentials` it signs with the mounted Secret's keys (or botocore's usual
    chain); without, it sends unsigned requests, so no identity reaches an unlisted bucket.
    """
    client_config = botocore.config.Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=config.timeout,
        read_timeout=config.timeout,
        # Custom endpoints (MinIO, Ceph, versitygw...) rarely do virtual-host buckets.
        s3={"addressing_style": "path" if config.s3_endpoint else "auto"},
    )
    if not use_credentials:
        client_config = client_config.merge(
            botocore.config.Config(signature_version=botocore.UNSIGNED)
        )
    secrets = config.credentials_dir if use_credentials else None
    values = {name: _read_secret(secrets, name) for name in S3_CREDENTIAL_FILES}
    key_id, secret, token = (values[name] for name in S3_CREDENTIAL_FILES)
    if bool(key_id) != bool(secret):
        raise AccessDenied(
            f"{uri}: {config.credentials_dir} holds only one of AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY"
        )
    region = (
        _read_secret(config.credentials_dir, "AWS_REGION")
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or "us-east-1"
    )
    session = boto3.session.Session(
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        aws_session_token=token,
        region_name=region,
    )
    try:
        return session.client("s3", endpoint_url=config.s3_endpoint, config=client_config)
    except ValueError as exc:
        raise InvalidArgument(f"invalid S3 endpoint {config.s3_endpoint!r}: {exc}") from None


def s3_error(code: str, status: int, uri: str) -> PullError:
    """The pull error an S3 error code / HTTP status means. Pure; tested as a table."""
    if code in _NOT_FOUND_CODES or status == 404:
        return NotFound(f"{uri}: {code}: the object does not exist")
    if code in _DENIED_CODES or status in (401, 403):
        return AccessDenied(f"{uri}: {code}: access denied")
    if code in _TRANSIENT_CODES or status in (429, 503) or status >= 500:
        return SourceUnavailable(f"{uri}: {code} (HTTP {status})")
    return SourceRejected(f"{uri}: {code} (HTTP {status})")


def _translate_s3(exc: Exception, uri: str) -> PullError:
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return s3_error(str(error.get("Code", status)), int(status), uri)
    if isinstance(
        exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError
    ):
        return AccessDenied(f"{uri}: no usable S3 credentials: {exc}")
    if isinstance(exc, botocore.exceptions.ParamValidationError):
        return UnsupportedSource(f"{uri}: {exc}")
    return SourceUnavailable(f"{uri}: {type(exc).__name__}: {exc}")


_S3_FAILURES = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)
_STREAM_FAILURES = (
    botocore.exceptions.BotoCoreError,
    urllib3.exceptions.HTTPError,
    OSError,
)


@contextmanager
def _open_s3(
    source: S3Source, uri: str, config: SourceConfig, use_credentials: bool
) -> Iterator[Body]:
    client = _s3_client(config, uri, use_credentials)
    try:
        response = client.get_object(Bucket=source.bucket, Key=source.key)
    except _S3_FAILURES as exc:
        raise _translate_s3(exc, uri) from None
    body = response["Body"]
    try:
        yield Body(_read_s3(body.iter_chunks(CHUNK), uri), response.get("ContentLength"))
    finally:
        body.close()


def _read_s3(chunks: Iterator[bytes], uri: str) -> Iterator[bytes]:
    try:
        yield from chunks
    except _STREAM_FAILURES as exc:
        raise SourceUnavailable(f"{uri}: download interrupted: {type(exc).__name__}") from None
