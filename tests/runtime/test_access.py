"""Tables for who may receive credentials (`conch_runtime.access`) and the bearer hook."""

from __future__ import annotations

from pathlib import PurePosixPath

import httpx
import pytest

from conch_runtime.access import HostPattern, Origin, authorize, credential_targets, origin_of
from conch_runtime.errors import CredentialsNotAllowed, InvalidArgument, UnsupportedSource
from conch_runtime.sources import bearer_hook
from conch_runtime.uri import FileSource, HttpSource, PvcSource, S3Source, Source


@pytest.mark.parametrize(
    ("pattern", "host", "port", "allowed"),
    [
        ("models.example.com", "models.example.com", 443, True),
        ("Models.Example.COM", "models.EXAMPLE.com", 80, True),  # case-insensitive
        ("models.example.com", "models.example.com.", 443, True),  # the root dot
        ("models.example.com", "evil.models.example.com", 443, False),
        ("models.example.com", "models.example.com.evil.net", 443, False),
        ("models.example.com", "example.com", 443, False),
        ("models.example.com:8443", "models.example.com", 8443, True),
        ("models.example.com:8443", "models.example.com", 443, False),
        ("*.example.com", "a.example.com", 443, True),
        ("*.example.com", "a.b.example.com", 443, True),
        ("*.example.com", "example.com", 443, False),  # subdomains only
        ("*.example.com", "aexample.com", 443, False),
        ("*.example.com:9000", "a.example.com", 443, False),
        ("*.0.0.1", "127.0.0.1", 80, False),  # a wildcard never matches an address
        ("127.0.0.1", "127.0.0.1", 7070, True),
        ("127.0.0.1:7070", "127.0.0.1", 7070, True),
        ("[::1]:8080", "::1", 8080, True),
        ("my-bucket", "my-bucket", None, True),  # an s3 bucket: no port
        ("my-bucket:443", "my-bucket", None, False),
    ],
)
def test_host_pattern_matches(pattern: str, host: str, port: int | None, allowed: bool) -> None:
    assert HostPattern.parse(pattern).matches(host, port) is allowed


@pytest.mark.parametrize(
    "pattern", ["", "*.", "https://host", "host/path", "user@host", "host:99999", "ho st", "*"]
)
def test_host_pattern_refuses(pattern: str) -> None:
    with pytest.raises(InvalidArgument, match="--credentials-host"):
        HostPattern.parse(pattern)


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("http://Host/a", Origin("http", "host", 80)),
        ("https://host/a", Origin("https", "host", 443)),
        ("https://host:443/a", Origin("https", "host", 443)),
        ("https://host:8443/a?x=1", Origin("https", "host", 8443)),
        ("http://[::1]:9/a", Origin("http", "::1", 9)),
    ],
)
def test_origin_of(url: str, origin: Origin) -> None:
    assert origin_of(url) == origin


@pytest.mark.parametrize(
    ("source", "endpoint", "targets"),
    [
        (HttpSource("https://h.example/a"), None, (("h.example", 443),)),
        (S3Source("bkt", "k"), None, (("bkt", None),)),
        (S3Source("bkt", "k"), "http://127.0.0.1:7070", (("bkt", None), ("127.0.0.1", 7070))),
        (PvcSource("claim", PurePosixPath("a")), "http://x", ()),
        (FileSource(PurePosixPath("/a")), None, ()),
    ],
)
def test_credential_targets(
    source: Source, endpoint: str | None, targets: tuple[tuple[str, int | None], ...]
) -> None:
    assert credential_targets(source, endpoint) == targets


def _authorize(
    source: Source,
    hosts: list[str],
    *,
    credentials: bool = True,
    allow_file: bool = False,
    endpoint: str | None = None,
) -> bool:
    return authorize(
        source,
        "URI",
        allow_file=allow_file,
        credentials_hosts=[HostPattern.parse(h) for h in hosts],
        has_credentials=credentials,
        s3_endpoint=endpoint,
    )


S3 = S3Source("models", "m.tgz")
ENDPOINT = "https://s3.internal:9000"


@pytest.mark.parametrize(
    ("source", "hosts", "credentials", "endpoint", "use"),
    [
        (HttpSource("https://h.example/a"), ["h.example"], True, None, True),
        (HttpSource("https://h.example/a"), ["h.example"], False, None, True),
        (HttpSource("https://h.example/a"), [], False, None, False),  # anonymous, any host
        (S3, ["models"], True, None, True),
        (S3, ["models", "s3.internal"], True, ENDPOINT, True),
        (S3, ["models", "s3.internal:9000"], True, ENDPOINT, True),
        (S3, ["other"], False, None, False),  # unsigned request, not refused
        (PvcSource("c", PurePosixPath("a")), [], True, None, False),
        (FileSource(PurePosixPath("/a")), [], True, None, False),  # with allow_file
    ],
)
def test_authorize_allows(
    source: Source, hosts: list[str], credentials: bool, endpoint: str | None, use: bool
) -> None:
    assert (
        _authorize(source, hosts, credentials=credentials, allow_file=True, endpoint=endpoint)
        is use
    )


@pytest.mark.parametrize(
    ("source", "hosts", "endpoint", "named"),
    [
        (HttpSource("https://evil.example/a"), ["h.example"], None, "'evil.example'"),
        (HttpSource("https://h.example:444/a"), ["h.example:443"], None, "'h.example'"),
        (S3, [], None, "'models'"),
        (S3, ["s3.internal"], ENDPOINT, "'models'"),  # the endpoint alone is not enough
        (S3, ["models"], ENDPOINT, "'s3.internal'"),  # nor the bucket alone
    ],
)
def test_authorize_refuses_credentials(
    source: Source, hosts: list[str], endpoint: str | None, named: str
) -> None:
    with pytest.raises(CredentialsNotAllowed, match=named) as caught:
        _authorize(source, hosts, endpoint=endpoint)
    assert "--credentials-host" in caught.value.message


def test_file_needs_allow_file() -> None:
    with pytest.raises(UnsupportedSource, match="needs --allow-file"):
        _authorize(FileSource(PurePosixPath("/etc/passwd")), [], credentials=False)


@pytest.mark.parametrize(
    ("url", "sent"),
    [
        ("http://h.example/a", True),
        ("http://h.example:80/b?c", True),
        ("https://h.example/a", False),  # httpx would keep it on this upgrade; we do not
        ("http://h.example:8080/a", False),
        ("http://other.example/a", False),
        ("http://sub.h.example/a", False),
    ],
)
def test_bearer_hook_sends_the_token_to_the_origin_only(url: str, sent: bool) -> None:
    hook = bearer_hook("tok", origin_of("http://h.example/start"))
    request = httpx.Request("GET", url, headers={"Authorization": "Bearer carried-over"})
    hook(request)
    assert request.headers.get("Authorization") == ("Bearer tok" if sent else None)


def test_bearer_hook_without_a_token_sends_none() -> None:
    request = httpx.Request("GET", "http://h.example/a", headers={"Authorization": "x"})
    bearer_hook(None, origin_of("http://h.example/a"))(request)
    assert "Authorization" not in request.headers
