"""Tables for the pure parts of pull: URI parsing, member paths, status mapping, backoff."""

from __future__ import annotations

import inspect
import re
from pathlib import Path, PurePosixPath

import pytest

import conch_runtime
import conch_runtime.__main__ as cli
from conch_runtime import errors
from conch_runtime.archive import member_path, shown
from conch_runtime.errors import (
    AccessDenied,
    HostileArchive,
    InvalidArgument,
    NotFound,
    PullError,
    SourceRejected,
    SourceUnavailable,
    UnsupportedSource,
)
from conch_runtime.pull import normalize_digest
from conch_runtime.retry import RetryPolicy, with_retries
from conch_runtime.sources import http_status_error, s3_error
from conch_runtime.uri import FileSource, HttpSource, PvcSource, S3Source, parse_uri


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("file:///srv/a.tar.gz", FileSource(PurePosixPath("/srv/a.tar.gz"))),
        ("file://localhost/srv/a%20b.tgz", FileSource(PurePosixPath("/srv/a b.tgz"))),
        ("http://127.0.0.1:8080/a.tgz?x=1", HttpSource("http://127.0.0.1:8080/a.tgz?x=1")),
        ("HTTPS://models.example/m/1.tar", HttpSource("HTTPS://models.example/m/1.tar")),
        ("s3://my-bucket/models/mlp/1.tar.gz", S3Source("my-bucket", "models/mlp/1.tar.gz")),
        ("s3://b.with.dots/k", S3Source("b.with.dots", "k")),
        ("pvc://model-store/mlp/1.tgz", PvcSource("model-store", PurePosixPath("mlp/1.tgz"))),
    ],
)
def test_parse_uri_accepts(uri: str, expected: object) -> None:
    assert parse_uri(uri) == expected


@pytest.mark.parametrize(
    ("uri", "says"),
    [
        ("", "unsupported scheme"),
        ("/abs/path.tgz", "unsupported scheme"),
        ("ftp://host/a.tgz", "unsupported scheme 'ftp'"),
        ("gs://bucket/key", "unsupported scheme 'gs'"),
        ("file://otherhost/a.tgz", "must be local"),
        ("file:///srv/../etc/shadow", "'..'"),
        ("file:///srv/dir/", "must be relative"),
        ("http:///no-host", "needs a host"),
        ("s3://Bad_Bucket/key", "not a valid S3 bucket"),
        ("s3://ab/key", "not a valid S3 bucket"),
        ("s3://bucket", "needs an object key"),
        ("s3://bucket/dir/", "needs an object key"),
        ("s3://bucket/key?versionId=1", "no query"),
        ("pvc://Claim/a.tgz", "not a valid PersistentVolumeClaim"),
        ("pvc://claim/../other/a.tgz", "'..'"),
        ("pvc://claim/a/%2e%2e/b", "'..'"),
        ("pvc://claim/", "must be relative"),
        ("pvc://claim//etc/passwd", "must be relative"),
        ("https://user:hunter2@h.example/a.tgz", "https://***@h.example/a.tgz: credentials"),
        ("http://hunter2@h.example/a.tgz", "credentials in the URI are not allowed"),
        ("s3://AKIA:hunter2@bucket/key", "s3://***@bucket/key: credentials"),
    ],
)
def test_parse_uri_refuses(uri: str, says: str) -> None:
    with pytest.raises(UnsupportedSource, match=re.escape(says)) as caught:
        parse_uri(uri)
    assert caught.value.reason == "UnsupportedSource"
    assert "hunter2" not in caught.value.message


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mlp/config.pbtxt", PurePosixPath("mlp/config.pbtxt")),
        ("./mlp/1/model.py", PurePosixPath("mlp/1/model.py")),
        ("mlp//1/./x", PurePosixPath("mlp/1/x")),
        ("mlp/", PurePosixPath("mlp")),
        (".", None),
        ("./", None),
        ("..foo/bar..", PurePosixPath("..foo/bar..")),
        ("mlp/labels-zéro.txt", PurePosixPath("mlp/labels-zéro.txt")),
        ("/".join(["d"] * 32), PurePosixPath(*["d"] * 32)),  # exactly MAX_DEPTH
        ("m/" + "x" * 255, PurePosixPath("m/" + "x" * 255)),
    ],
)
def test_member_path_accepts(name: str, expected: PurePosixPath | None) -> None:
    assert member_path(name) == expected


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("../evil", "'..'"),
        ("mlp/../../evil", "'..'"),
        ("./..", "'..'"),
        ("/etc/passwd", "absolute"),
        ("//etc/passwd", "absolute"),
        ("mlp/\x00x", "control character"),
        ("mlp/\x1b[31mred", "control character"),
        ("mlp/a\nb", "control character"),
        ("mlp/a\rb", "control character"),
        ("mlp/a\x7fb", "control character"),
        ("mlp/a\x9bb", "control character"),  # C1 CSI
        ("mlp/a\u2028b", "control character"),  # line separator
        ("/".join(["d"] * 33), "33 levels deep, over the limit of 32"),
        ("a/" * 2100 + "f", "longer than 1024 bytes (4201)"),
        ("a/" * 40 + "f", "41 levels deep"),
        ("m/" + "x" * 256, "longer than 255 bytes"),
        ("/".join(["x" * 200] * 6), "longer than 1024 bytes"),
    ],
)
def test_member_path_refuses(name: str, says: str) -> None:
    with pytest.raises(HostileArchive, match=re.escape(says)) as caught:
        member_path(name)
    message = caught.value.message
    assert len(message) < 200  # a hostile name is shown short...
    assert all(c.isprintable() for c in message)  # ...and escaped


def test_shown_escapes_and_shortens() -> None:
    assert shown("mlp/\x1b[2J") == "'mlp/\\x1b[2J'"
    assert shown("x" * 100) == "'" + "x" * 60 + "'... (100 chars)"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, None),
        (204, None),
        (404, NotFound),
        (410, NotFound),
        (401, AccessDenied),
        (403, AccessDenied),
        (408, SourceUnavailable),
        (429, SourceUnavailable),
        (500, SourceUnavailable),
        (502, SourceUnavailable),
        (503, SourceUnavailable),
        (400, SourceRejected),
        (405, SourceRejected),
        (416, SourceRejected),
    ],
)
def test_http_status_mapping(status: int, expected: type[PullError] | None) -> None:
    error = http_status_error(status, "http://x/a")
    assert type(error) is expected if expected else error is None


def test_retry_after_header_is_carried() -> None:
    error = http_status_error(503, "http://x/a", "7")
    assert isinstance(error, SourceUnavailable)
    assert error.retry_after == 7.0


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("NoSuchKey", 404, NotFound),
        ("NoSuchBucket", 404, NotFound),
        ("404", 404, NotFound),
        ("AccessDenied", 403, AccessDenied),
        ("InvalidAccessKeyId", 403, AccessDenied),
        ("SignatureDoesNotMatch", 403, AccessDenied),
        ("SlowDown", 503, SourceUnavailable),
        ("Throttling", 400, SourceUnavailable),
        ("RequestTimeout", 400, SourceUnavailable),
        ("InternalError", 500, SourceUnavailable),
        ("TooManyRequests", 429, SourceUnavailable),
        ("InvalidRequest", 400, SourceRejected),
    ],
)
def test_s3_error_mapping(code: str, status: int, expected: type[PullError]) -> None:
    assert type(s3_error(code, status, "s3://b/k")) is expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("A" * 64, "a" * 64),
        ("sha256:" + "0f" * 32, "0f" * 32),
        ("  " + "1" * 64 + "\n", "1" * 64),
    ],
)
def test_normalize_digest(raw: str, expected: str) -> None:
    assert normalize_digest(raw) == expected


@pytest.mark.parametrize("raw", ["", "abc", "g" * 64, "a" * 63, "a" * 65, "md5:" + "a" * 64])
def test_normalize_digest_refuses(raw: str) -> None:
    with pytest.raises(InvalidArgument):
        normalize_digest(raw)


@pytest.mark.parametrize(
    ("failures", "hint", "rand", "expected"),
    [
        (1, None, 0.0, 0.5),
        (2, None, 0.0, 1.0),
        (3, None, 0.0, 2.0),
        (6, None, 0.0, 10.0),  # capped
        (2, None, 1.0, 0.75),  # full jitter removes a quarter
        (1, 3.0, 0.9, 3.0),  # a server's hint wins
        (1, 60.0, 0.0, 10.0),  # but is capped too
    ],
)
def test_backoff_delays(failures: int, hint: float | None, rand: float, expected: float) -> None:
    assert RetryPolicy().delay(failures, hint, rand) == pytest.approx(expected)


def test_with_retries_stops_when_the_next_try_would_start_past_the_deadline() -> None:
    now = [0.0]
    tries: list[float] = []

    def attempt() -> None:
        tries.append(now[0])
        now[0] += 1.0
        raise SourceUnavailable("down")

    policy = RetryPolicy(attempts=100, base_delay=1.0, factor=1.0, jitter=0.0)
    with pytest.raises(SourceUnavailable, match=r"gave up after 3 attempt\(s\): out of time"):
        with_retries(
            attempt,
            policy,
            sleep=lambda s: now.__setitem__(0, now[0] + s),
            give_up_at=5.5,
            clock=lambda: now[0],
        )
    assert tries == [0.0, 2.0, 4.0]  # a 4th would start at 6.0, past 5.5


def test_with_retries_gives_up_after_attempts_and_passes_permanent_errors() -> None:
    calls: list[int] = []
    waits: list[float] = []

    def flaky() -> int:
        calls.append(1)
        raise SourceUnavailable("down")

    with pytest.raises(SourceUnavailable, match="gave up after 3 attempts"):
        with_retries(flaky, RetryPolicy(attempts=3, jitter=0), sleep=waits.append)
    assert len(calls) == 3
    assert waits == [0.5, 1.0]

    def missing() -> int:
        calls.append(1)
        raise NotFound("gone")

    calls.clear()
    with pytest.raises(NotFound):
        with_retries(missing, RetryPolicy(attempts=5), sleep=waits.append)
    assert len(calls) == 1


def test_error_tree_reasons_and_exit_codes_are_distinct_and_documented() -> None:
    classes = [c for c in vars(errors).values() if inspect.isclass(c) and issubclass(c, PullError)]
    assert len(classes) == len(errors.__all__)
    reasons = [c.reason for c in classes]
    codes = [c.exit_code for c in classes]
    assert len(set(reasons)) == len(reasons)
    assert len(set(codes)) == len(codes)
    assert 0 not in codes and 2 not in codes  # success and argparse's usage error
    assert all(re.fullmatch(r"[A-Z][A-Za-z]+", r) for r in reasons)
    doc = cli.__doc__ or ""
    for c in classes:
        assert re.search(rf"^\s+{c.exit_code}\s+{c.reason}\s", doc, re.M), c.__name__


def test_runtime_never_imports_the_operator() -> None:
    for path in Path(conch_runtime.__file__).parent.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(from|import)\s+conch(\.|\s|$)", text, re.M), path
