"""Pull over HTTP from a real stdlib server on 127.0.0.1: retries, 404, tokens, size limits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conch_runtime.errors import AccessDenied, NotFound, SourceUnavailable, TooLarge
from conch_runtime.pull import pull
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
        f"{http.url}/flaky.tgz", artifact.sha256, models / "repo", retry=FAST, sleep=waits.append
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
        retry=FAST,
        sleep=waits.append,
    )
    assert (result.attempts, waits) == (2, [0.0])


def test_404_is_not_found_without_retry(
    http: LoopbackHTTP, artifact: Artifact, models: Path
) -> None:
    with pytest.raises(NotFound, match="HTTP 404") as caught:
        pull(f"{http.url}/missing.tgz", artifact.sha256, models / "repo", retry=FAST)
    assert caught.value.reason == "ArtifactNotFound"
    assert f"{http.url}/missing.tgz" in caught.value.message
    assert http.count("/missing.tgz") == 1
    assert list(models.iterdir()) == []


def test_persistent_503_gives_up_after_the_attempts(
    http: LoopbackHTTP, artifact: Artifact, models: Path
) -> None:
    with pytest.raises(SourceUnavailable, match="gave up after 4 attempts"):
        pull(f"{http.url}/down.tgz", artifact.sha256, models / "repo", retry=FAST)
    assert http.count("/down.tgz") == 4
    assert list(models.iterdir()) == []


def test_bearer_token_from_a_mounted_secret(
    http: LoopbackHTTP, artifact: Artifact, models: Path, tmp_path: Path
) -> None:
    url = f"{http.url}/private.tgz"
    with pytest.raises(AccessDenied, match="HTTP 401"):
        pull(url, artifact.sha256, models / "repo", retry=FAST)
    assert http.count("/private.tgz") == 1  # a 401 is not retried

    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "token").write_text("s3cr3t\n")
    pull(
        url, artifact.sha256, models / "repo", config=SourceConfig.from_env(credentials_dir=secret)
    )
    assert read_tree(models / "repo") == MODEL_TREE
    assert http.requests[-1][1].get("Authorization") == "Bearer s3cr3t"


def test_bearer_token_from_the_environment(
    http: LoopbackHTTP, artifact: Artifact, models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONCH_HTTP_TOKEN", "s3cr3t")
    pull(f"{http.url}/private.tgz", artifact.sha256, models / "repo")
    assert read_tree(models / "repo") == MODEL_TREE


def test_size_limit_without_content_length(
    http: LoopbackHTTP, artifact: Artifact, models: Path
) -> None:
    limit = len(artifact.data) // 2
    with pytest.raises(TooLarge, match=f"more than {limit} bytes"):
        pull(f"{http.url}/unsized.tgz", artifact.sha256, models / "repo", max_bytes=limit)
    assert list(models.iterdir()) == []
    pull(f"{http.url}/unsized.tgz", artifact.sha256, models / "repo")  # and without a limit
    assert read_tree(models / "repo") == MODEL_TREE


def test_connection_refused_is_transient(artifact: Artifact, models: Path) -> None:
    from tests.runtime.s3server import free_port

    url = f"http://127.0.0.1:{free_port()}/a.tgz"  # nothing listens there
    waits: list[float] = []
    with pytest.raises(SourceUnavailable, match="ConnectError") as caught:
        pull(url, artifact.sha256, models / "repo", retry=FAST, sleep=waits.append)
    assert caught.value.reason == "SourceUnavailable"
    assert len(waits) == FAST.attempts - 1
    assert list(models.iterdir()) == []
