"""Parse an artifact URI into a typed source, refusing shapes that could reach elsewhere.

Pure: no I/O. Where a path ends up on disk (file://, pvc://) is decided here, so the
fetchers never see a `..` or a relative path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

from conch_runtime.errors import UnsupportedSource

__all__ = ["FileSource", "HttpSource", "PvcSource", "S3Source", "Source", "parse_uri"]

SCHEMES = ("file", "http", "https", "s3", "pvc")

# A PersistentVolumeClaim name is a DNS-1123 subdomain.
_CLAIM = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# S3 bucket naming rules (the strict, current ones): 3-63 chars, lowercase, digits, . and -.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class FileSource:
    """A file on the local filesystem (local use and tests)."""

    path: PurePosixPath


@dataclass(frozen=True)
class HttpSource:
    """An http:// or https:// URL, kept verbatim."""

    url: str


@dataclass(frozen=True)
class S3Source:
    """An object in an S3 (or S3-compatible) bucket."""

    bucket: str
    key: str


@dataclass(frozen=True)
class PvcSource:
    """A file inside a PersistentVolumeClaim that the pod mounts under a known root."""

    claim: str
    path: PurePosixPath  # relative, no `..`, never empty


Source = FileSource | HttpSource | S3Source | PvcSource


def _relative_parts(raw: str, uri: str) -> PurePosixPath:
    """A relative path with no empty, `.` or `..` component, or UnsupportedSource."""
    parts = raw.split("/")
    if not raw or any(p in ("", ".", "..") for p in parts) or "\x00" in raw:
        raise UnsupportedSource(
            f"{uri}: path {raw!r} must be relative, non-empty and free of '.', '..' and '//'"
        )
    return PurePosixPath(*parts)


def parse_uri(uri: str) -> Source:
    """Parse `uri`; every malformed or unsupported shape raises UnsupportedSource."""
    try:
        parts = urlsplit(uri)
    except ValueError as exc:
        raise UnsupportedSource(f"{uri}: not a valid URI ({exc})") from None
    scheme = parts.scheme.lower()
    if "@" in parts.netloc:  # user:password@host: never echoed, never used
        redacted = uri.replace(parts.netloc, "***@" + parts.netloc.rsplit("@", 1)[1], 1)
        raise UnsupportedSource(
            f"{redacted}: credentials in the URI are not allowed; put them in a Secret "
            "(credentialsSecretRef)"
        )
    if scheme not in SCHEMES:
        raise UnsupportedSource(
            f"{uri}: unsupported scheme {parts.scheme or '(none)'!r}; use one of {', '.join(SCHEMES)}"
        )
    if scheme in ("http", "https"):
        if not parts.hostname:
            raise UnsupportedSource(f"{uri}: an {scheme} URI needs a host")
        return HttpSource(uri)
    if parts.query or parts.fragment:
        raise UnsupportedSource(f"{uri}: a {scheme} URI takes no query or fragment")
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise UnsupportedSource(f"{uri}: file URIs must be local (file:///abs/path)")
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise UnsupportedSource(f"{uri}: file URIs need an absolute path")
        return FileSource(PurePosixPath("/") / _relative_parts(path[1:], uri))
    if scheme == "s3":
        bucket, key = parts.netloc, unquote(parts.path[1:])
        if not _BUCKET.match(bucket):
            raise UnsupportedSource(f"{uri}: {bucket!r} is not a valid S3 bucket name")
        if not key or key.endswith("/"):
            raise UnsupportedSource(f"{uri}: an s3 URI needs an object key (s3://BUCKET/KEY)")
        return S3Source(bucket, key)
    claim = parts.netloc
    if not _CLAIM.match(claim) or len(claim) > 253:
        raise UnsupportedSource(f"{uri}: {claim!r} is not a valid PersistentVolumeClaim name")
    return PvcSource(claim, _relative_parts(unquote(parts.path[1:]), uri))
