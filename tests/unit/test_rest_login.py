"""conch.rest.login in a pod: the API server from KUBERNETES_SERVICE_HOST/PORT (as
client-go finds it) and the mounted ServiceAccount, whose token file is read again."""

from __future__ import annotations

from pathlib import Path

import pytest

from conch import rest


@pytest.fixture
def account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "token").write_text("t0k3n\n")
    (tmp_path / "namespace").write_text("conch-system")
    monkeypatch.setattr(rest, "SERVICE_ACCOUNT", tmp_path)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    return tmp_path


@pytest.mark.parametrize(
    ("host", "server"),
    [("127.0.0.53", "https://127.0.0.53:443"), ("::1", "https://[::1]:443")],
)
def test_in_a_pod(account: Path, monkeypatch: pytest.MonkeyPatch, host: str, server: str) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
    found = rest.login()
    assert found.info.server == server
    assert found.info.token == "t0k3n" and found.info.default_namespace == "conch-system"
    assert found.info.ca_path is None  # no ca.crt mounted: the system's roots
    assert found.token_file == account / "token"


def test_outside_a_pod_the_kubeconfig_is_read(
    account: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    config = tmp_path / "kubeconfig"
    config.write_text(
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:6443'}}]\n"
        "users: [{name: u, user: {token: abc}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u, namespace: team}}]\n"
        "current-context: x\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(config))
    found = rest.login()
    assert (found.info.server, found.info.token) == ("https://127.0.0.1:6443", "abc")
    assert found.info.default_namespace == "team" and found.token_file is None
