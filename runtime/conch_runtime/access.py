"""Where a pull may read from, and where its credentials may go: decided before any I/O.

Pure. The tenant writes the URI; the cluster admin writes `--credentials-host` (through the
operator) and `--allow-file`. So a URI can never carry the pod's credentials to a host of the
tenant's choosing, nor read the runtime container's own files:

- Credentials (a bearer token, S3 keys, anything from `--credentials-dir` or the
  environment) are used only when every place they would reach is on the admin's list: the
  host of an http(s) URI; for s3, the bucket name and, when an endpoint is set, its host.
  Configured means a `--credentials-dir` for any remote source, else a token for http(s)
  or an AWS identity in the environment for s3. When credentials are configured and the
  target is not listed, the pull is refused (`CredentialsNotAllowed`); with none it goes
  ahead without any: an unlisted bucket gets an unsigned request, so no identity that
  botocore would find by itself (a node's instance profile) reaches it either.
- `file://` is for the sandbox and tests: refused unless `--allow-file` is given.

A pattern is a host (or bucket) name, case-insensitive, with an optional `:port`; a leading
`*.` matches any subdomain (not the name itself). `[::1]:8080` names an IPv6 host.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from conch_runtime.errors import CredentialsNotAllowed, InvalidArgument, UnsupportedSource
from conch_runtime.uri import FileSource, HttpSource, S3Source, Source

__all__ = ["HostPattern", "Origin", "authorize", "credential_targets", "origin_of"]

DEFAULT_PORTS = {"http": 80, "https": 443}

_NAME = re.compile(r"^[a-z0-9]([a-z0-9_.-]*[a-z0-9])?$|^\[[0-9a-f:.]+\]$")


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Origin:
    """Scheme, host and port: what a browser would call the origin of a URL."""

    scheme: str
    host: str
    port: int | None


def origin_of(url: str) -> Origin:
    """The origin of `url`, the port made explicit from the scheme's default."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return Origin(scheme, (parts.hostname or "").lower(), port or DEFAULT_PORTS.get(scheme))


@dataclass(frozen=True)
class HostPattern:
    """One `--credentials-host` entry, parsed once."""

    name: str  # lowercase, without the leading "*."
    subdomains: bool
    port: int | None

    @classmethod
    def parse(cls, text: str) -> HostPattern:
        """Parse `host`, `host:port` or `*.domain[:port]`; InvalidArgument otherwise."""
        raw = text.strip().lower()
        subdomains = raw.startswith("*.")
        rest = raw[2:] if subdomains else raw
        try:
            parts = urlsplit(f"//{rest}")
            port = parts.port
        except ValueError:
            raise InvalidArgument(f"--credentials-host {text!r}: not a host[:port]") from None
        host = parts.hostname or ""
        shown = f"[{host}]" if ":" in host else host
        if not _NAME.match(shown) or parts.netloc != rest or parts.username is not None:
            raise InvalidArgument(
                f"--credentials-host {text!r}: expected a host or bucket name, optionally "
                "with :port, or *.domain"
            )
        return cls(host, subdomains, port)

    def matches(self, host: str, port: int | None) -> bool:
        """Whether `host` (and `port`, None for a bucket) is what this pattern allows."""
        host = host.lower().rstrip(".")
        if self.port is not None and port != self.port:
            return False
        if self.subdomains:  # a DNS name's subdomains: never an address that ends alike
            return not _is_address(host) and host.endswith(f".{self.name}")
        return host == self.name


def credential_targets(
    source: Source, s3_endpoint: str | None
) -> tuple[tuple[str, int | None], ...]:
    """Every (host or bucket, port) the credentials would reach for `source`; () for local."""
    match source:
        case HttpSource(url):
            origin = origin_of(url)
            return ((origin.host, origin.port),)
        case S3Source(bucket):
            if not s3_endpoint:
                return ((bucket, None),)
            endpoint = origin_of(s3_endpoint)
            return ((bucket, None), (endpoint.host, endpoint.port))
        case _:
            return ()


def authorize(
    source: Source,
    uri: str,
    *,
    allow_file: bool,
    credentials_hosts: Iterable[HostPattern],
    has_credentials: bool,
    s3_endpoint: str | None,
) -> bool:
    """Refuse what policy forbids; return whether credentials may be used for `source`."""
    if isinstance(source, FileSource) and not allow_file:
        raise UnsupportedSource(
            f"{uri}: file:// is for the sandbox and tests only and needs --allow-file "
            "(use s3://, http(s):// or pvc://)"
        )
    targets = credential_targets(source, s3_endpoint)
    if not targets:
        return False
    patterns = tuple(credentials_hosts)
    refused = [
        name
        for name, port in targets
        if not any(pattern.matches(name, port) for pattern in patterns)
    ]
    if not refused:
        return True
    if has_credentials:
        raise CredentialsNotAllowed(
            f"{uri}: credentials are configured but {' and '.join(map(repr, refused))} "
            f"{'is' if len(refused) == 1 else 'are'} not allowed to receive them (the cluster "
            "admin lists hosts and buckets with --credentials-host)"
        )
    return False
