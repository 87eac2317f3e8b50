"""Pull over HTTP from real stdlib servers on loopback: retries, 404, tokens, size limits.

Credentials: a token goes only to a host the admin listed, and never across a redirect to
another origin; 127.0.0.1 and 127.0.0.2 are two different hosts of this machine.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conch_runtime.errors import (
    AccessDenied,
    CredentialsNotAllowed,
    InvalidArgument,
    NotFound,
    SourceUnavailable,
    TooLarge,
)
from conch_runtime.pull import PullOptions, pull
from conch_runtime.retry import RetryPolicy
from conch_runtime.sources import SourceConfig
from tests.runtime.conftest import Artifact
from tests.runtime.helpers import MODEL_TREE, LoopbackHTTP, Route, read_tree, serve_http

FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)


@pytest.fixture
def http(artifact: Artifact) -> Iterator[LoopbackHTTP]:
    yield from serve_http(
        {
            "/ok.tgz": Route(artifact.data),
            "/flaky.tgz": Route(artifact.data, fail_first=[503, 503]),
            "/throttled.tgz": Route(artifact.data, fail_first=[429], headers={"Retry-After": "0"}),
            "/down.tgz": Route(status=503),
            "/private.tgz": Route(artifact.data, token="s3cr3t"),
            "/unsized.tgz": Route(artifact.data, content_length=False),
        }
    )


def test_http_pull(http: LoopbackHTTP, artifact: Artifact, models: Path) -> None:
    result = pull(f"{http.url}/ok.tgz", artifact.sha256, models / "repo")
    assert read_tree(models / "repo") == MODEL_TREE
    assert result.attempts == 1
    (_, headers) = http.requests[0]
    assert headers.get("Accept-Encoding") == "identity"  # digest is of the stored bytes
    assert "Authorization" not in headers


def test_two_503s_then_success_is_retried(
    http: LoopbackHTTP, artifact: Artifact, models: Path
) -> None:
    waits: list[float] = []
    result = pull(
        f"{http.url}/flaky.tgz",
        artifact.sha256,
        models / "repo",
        PullOptions(retry=FAST),
        sleep=waits.append,
    )
    assert result.attempts == 3
    assert http.count("/flaky.tgz") == 3
    assert len(waits) == 2 and waits[0] <= waits[1]
    assert read_tree(models / "repo") == MODEL_TREE
    assert sorted(p.name for p in models.iterdir()) == ["repo"]


def test_429_is_retried_honouring_retry_after(
    http: LoopbackHTTP, artifact: Artifact, models: Path
) -> None:
    waits: list[float] = []
    result = pull(
        f"{http.url}/throttled.tgz",
        artifact.sha256,
        models / "repo",
        PullOptions(retry=FAST),
        sleep=waits.append,
    )
    assert (result.attempts, waits) == (2, [0.0])


def test_404_is_not_found_without_retry(
    http: LoopbackHTTP, artifact: Artifact, models: Path
) -> None:
    with pytest.raises(NotFound, match="HTTP 404") as caught:
        pull(f"{http.url}/missing.tgz", artifact.sha256, models / "repo", PullOptions(retry=FAST))
    assert caught.value.reason == "ArtifactNotFound"
    assert f"{http.url}/missing.tgz" in caught.value.message
    assert http.count("/missing.tgz") == 1
    assert list(models.iterdir()) == []


def test_persistent_503_gives_up_after_the_attempts(
    http: LoopbackHTTP, artifact: Artifact, models: Path
) -> None:
    with pytest.raises(SourceUnavailable, match="gave up after 4 attempts"):
        pull(f"{http.url}/down.tgz", artifact.sha256, models / "repo", PullOptions(retry=FAST))
    assert http.count("/down.tgz") == 4
    assert list(models.iterdir()) == []


def test_bearer_token_from_a_mounted_secret(
    http: LoopbackHTTP, artifact: Artifact, models: Path, tmp_path: Path
) -> None:
    url = f"{http.url}/private.tgz"
    with pytest.raises(AccessDenied, match="HTTP 401"):
        pull(url, artifact.sha256, models / "repo", PullOptions(retry=FAST))
    assert http.count("/private.tgz") == 1  # a 401 is not retried

    config = SourceConfig.from_env(
        credentials_dir=token_secret(tmp_path), credentials_hosts=["127.0.0.1"]
    )
    pull(url, artifact.sha256, models / "repo", PullOptions(config=config))
    assert read_tree(models / "repo") == MODEL_TREE
    assert http.requests[-1][1].get("Authorization") == "Bearer s3cr3t"


def test_bearer_token_from_the_environment(
    http: LoopbackHTTP, artifact: Artifact, models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONCH_HTTP_TOKEN", "s3cr3t")
    config = SourceConfig.from_env(credentials_hosts=[f"127.0.0.1:{port_of(http)}"])
    pull(f"{http.url}/private.tgz", artifact.sha256, models / "repo", PullOptions(config=config))
    assert read_tree(models / "repo") == MODEL_TREE


def token_secret(tmp_path: Path) -> Path:
    """A directory shaped like a mounted Secret holding a bearer token."""
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "token").write_text("s3cr3t\n")
    return secret


def port_of(server: LoopbackHTTP) -> int:
    return int(server.url.rsplit(":", 1)[1])


@pytest.mark.parametrize(
    "hosts",
    [
        [],  # credentials configured, no host allowed
        ["127.0.0.2"],  # another host
        ["127.0.0.1:1"],  # the host, another port
        ["*.0.0.1"],  # a wildcard matches subdomains only
    ],
)
def test_credentials_refused_for_unlisted_host_before_connecting(
    http: LoopbackHTTP, artifact: Artifact, models: Path, tmp_path: Path, hosts: list[str]
) -> None:
    config = SourceConfig.from_env(credentials_dir=token_secret(tmp_path), credentials_hosts=hosts)
    with pytest.raises(CredentialsNotAllowed, match=r"'127\.0\.0\.1' is not allowed") as caught:
        pull(
            f"{http.url}/private.tgz", artifact.sha256, models / "repo", PullOptions(config=config)
        )
    assert (caught.value.reason, caught.value.exit_code) == ("CredentialsNotAllowed", 14)
    assert http.requests == []  # not even a connection that could carry anything
    assert list(models.iterdir()) == []


def test_a_token_in_the_environment_counts_as_credentials(
    http: LoopbackHTTP, artifact: Artifact, models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONCH_HTTP_TOKEN", "s3cr3t")
    with pytest.raises(CredentialsNotAllowed):
        pull(f"{http.url}/ok.tgz", artifact.sha256, models / "repo")
    assert http.requests == []


def test_an_aws_identity_is_no_credential_for_http(
    http: LoopbackHTTP, artifact: Artifact, models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIA")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    pull(f"{http.url}/ok.tgz", artifact.sha256, models / "repo")  # nothing of it is sent
    assert "Authorization" not in http.requests[0][1]


def test_without_credentials_any_host_is_fine(
    http: LoopbackHTTP, artifact: Artifact, models: Path
) -> None:
    config = SourceConfig.from_env(credentials_hosts=["models.example.com"])
    pull(f"{http.url}/ok.tgz", artifact.sha256, models / "repo", PullOptions(config=config))
    assert read_tree(models / "repo") == MODEL_TREE
    assert "Authorization" not in http.requests[0][1]


def test_a_malformed_credentials_host_is_an_invalid_argument() -> None:
    with pytest.raises(InvalidArgument, match="credentials-host"):
        SourceConfig.from_env(credentials_hosts=["https://host/path"])


@pytest.fixture
def elsewhere(artifact: Artifact) -> Iterator[LoopbackHTTP]:
    """A second host (127.0.0.2) that serves the artifact to anyone and records headers."""
    yield from serve_http({"/ok.tgz": Route(artifact.data)}, host="127.0.0.2")


@contextmanager
def redirecting(target: str) -> Iterator[LoopbackHTTP]:
    """127.0.0.1: /moved.tgz answers 302 to `target`, for token holders only."""
    routes = {"/moved.tgz": Route(redirect=target, token="s3cr3t")}
    yield from serve_http(routes)


@pytest.mark.parametrize("also_allowed", [[], ["127.0.0.2"]])
def test_a_redirect_to_another_host_never_carries_the_token(
    elsewhere: LoopbackHTTP,
    artifact: Artifact,
    models: Path,
    tmp_path: Path,
    also_allowed: list[str],
) -> None:
    with redirecting(f"{elsewhere.url}/ok.tgz") as origin:
        config = SourceConfig.from_env(
            credentials_dir=token_secret(tmp_path),
            credentials_hosts=["127.0.0.1", *also_allowed],
        )
        pull(
            f"{origin.url}/moved.tgz", artifact.sha256, models / "repo", PullOptions(config=config)
        )
    assert read_tree(models / "repo") == MODEL_TREE
    assert origin.requests[0][1].get("Authorization") == "Bearer s3cr3t"
    [(path, headers)] = elsewhere.requests
    assert path == "/ok.tgz"
    # even where the admin allows the other host: credentials follow the URI, not a redirect
    assert "Authorization" not in headers and "s3cr3t" not in str(headers)


def test_a_redirect_to_another_port_never_carries_the_token(
    artifact: Artifact, models: Path, tmp_path: Path
) -> None:
    other = contextmanager(serve_http)({"/ok.tgz": Route(artifact.data)})
    with other as same_host, redirecting(f"{same_host.url}/ok.tgz") as origin:
        config = SourceConfig.from_env(
            credentials_dir=token_secret(tmp_path), credentials_hosts=["127.0.0.1"]
        )
        pull(
            f"{origin.url}/moved.tgz", artifact.sha256, models / "repo", PullOptions(config=config)
        )
        assert "Authorization" not in same_host.requests[0][1]
    assert read_tree(models / "repo") == MODEL_TREE


def test_a_redirect_within_the_origin_keeps_the_token(
    artifact: Artifact, models: Path, tmp_path: Path
) -> None:
    routes = {
        "/moved.tgz": Route(redirect="/private.tgz", token="s3cr3t"),
        "/private.tgz": Route(artifact.data, token="s3cr3t"),
    }
    with contextmanager(serve_http)(routes) as origin:
        config = SourceConfig.from_env(
            credentials_dir=token_secret(tmp_path), credentials_hosts=["127.0.0.1"]
        )
        pull(
            f"{origin.url}/moved.tgz", artifact.sha256, models / "repo", PullOptions(config=config)
        )
        assert [p for p, _ in origin.requests] == ["/moved.tgz", "/private.tgz"]
    assert read_tree(models / "repo") == MODEL_TREE


def test_size_limit_without_content_length(
    http: LoopbackHTTP, artifact: Artifact, models: Path
) -> None:
    limit = len(artifact.data) // 2
    with pytest.raises(TooLarge, match=f"more than {limit} bytes"):
        pull(
            f"{http.url}/unsized.tgz",
            artifact.sha256,
            models / "repo",
            PullOptions(max_bytes=limit),
        )
    assert list(models.iterdir()) == []
    pull(f"{http.url}/unsized.tgz", artifact.sha256, models / "repo")  # and without a limit
    assert read_tree(models / "repo") == MODEL_TREE


def test_a_trickling_server_cannot_hold_the_pull_past_its_deadline(
    artifact: Artifact, models: Path
) -> None:
    """One byte every 50 ms keeps every read under the 30 s read timeout; the whole
    artifact would take minutes. The deadline ends it, and no retry starts after it."""
    assert len(artifact.data) * 0.05 > 30
    routes = {"/slow.tgz": Route(artifact.data, trickle=0.05)}
    with contextmanager(serve_http)(routes) as slow:
        started = time.monotonic()
        with pytest.raises(SourceUnavailable, match=r"did not finish within 1\.5 s") as caught:
            pull(
                f"{slow.url}/slow.tgz",
                artifact.sha256,
                models / "repo",
                PullOptions(retry=FAST, deadline=1.5),
            )
        elapsed = time.monotonic() - started
        assert slow.count("/slow.tgz") == 1
    assert 1.5 <= elapsed < 10
    assert "out of time" in caught.value.message
    assert list(models.iterdir()) == []


def test_connection_refused_is_transient(artifact: Artifact, models: Path) -> None:
    from conch.dev.process import free_port

    url = f"http://127.0.0.1:{free_port()}/a.tgz"  # nothing listens there
    waits: list[float] = []
    with pytest.raises(SourceUnavailable, match="ConnectError") as caught:
        pull(url, artifact.sha256, models / "repo", PullOptions(retry=FAST), sleep=waits.append)
    assert caught.value.reason == "SourceUnavailable"
    assert len(waits) == FAST.attempts - 1
    assert list(models.iterdir()) == []
