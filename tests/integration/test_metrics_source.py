"""The operator's metrics source against a real Prometheus behind a real TLS gateway on
127.0.0.1 that, like Thanos, Mimir or a managed Prometheus, demands a bearer token and a
tenant header: what the flags say reaches the wire, a rotated token file is read anew, and
every refusal is a QueryFailed (never a silent None)."""

from __future__ import annotations

import argparse
import http.server
import ssl
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conch import operator_main, providers
from conch.dev import pki
from conch.dev.prometheus import PrometheusProcess
from conch.providers import QueryFailed

pytestmark = pytest.mark.integration

TENANT = ("X-Scope-OrgID", "team-a")


@dataclass
class Gate:
    """What the gateway accepts and what it saw."""

    upstream: str
    token: str = "first"
    delay: float = 0.0
    seen: list[dict[str, str]] = field(default_factory=list)


def handler(gate: Gate) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            gate.seen.append(dict(self.headers))
            time.sleep(gate.delay)
            allowed = (
                self.headers.get("Authorization") == f"Bearer {gate.token}"
                and self.headers.get(TENANT[0]) == TENANT[1]
            )
            if not allowed:
                self.send_response(401)
                self.end_headers()
                self.wfile.write(b"no token or no tenant")
                return
            with urllib.request.urlopen(gate.upstream + self.path, timeout=10) as upstream:
                body = upstream.read()
                self.send_response(upstream.status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@dataclass(frozen=True)
class Gateway:
    url: str
    gate: Gate
    ca: Path


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusProcess]:
    proc = PrometheusProcess(tmp_path_factory.mktemp("prometheus")).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def gateway(prometheus: PrometheusProcess, tmp_path: Path) -> Iterator[Gateway]:
    (tmp_path / "pki").mkdir()
    certs = pki.create(tmp_path / "pki")
    gate = Gate(upstream=prometheus.url)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler(gate))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs.serving_cert, certs.serving_key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Gateway(f"https://127.0.0.1:{server.server_address[1]}", gate, certs.ca_cert)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def from_flags(*flags: str) -> providers.MetricProvider:
    """The provider exactly as `conch operator run FLAGS` builds it."""
    parser = argparse.ArgumentParser()
    operator_main.add_arguments(parser)
    source = operator_main.metrics_source(parser.parse_args(list(flags)))
    assert source is not None
    return providers.create("prometheus", source)


def test_token_tenant_header_and_ca_reach_prometheus(gateway: Gateway, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")  # a Secret's trailing newline is not part of the token
    provider = from_flags(
        f"--prometheus-url={gateway.url}/",
        f"--prometheus-bearer-token-file={token}",
        f"--prometheus-ca-file={gateway.ca}",
        f"--prometheus-header={TENANT[0]}={TENANT[1]}",
    )
    assert provider.query("vector(42)") == 42.0
    assert provider.query("vector(1) * 0.25") == 0.25
    assert provider.query('up{job="nothing-here"}') is None  # no values is not an error
    assert provider.is_online()
    assert gateway.gate.seen[0]["Authorization"] == "Bearer first"
    assert gateway.gate.seen[0][TENANT[0]] == TENANT[1]

    # the mounted Secret rotates: the next query sends the new token, no restart
    gateway.gate.token = "second"
    token.write_text("second")
    assert provider.query("vector(7)") == 7.0
    assert gateway.gate.seen[-1]["Authorization"] == "Bearer second"


@pytest.mark.parametrize("missing", ["token", "tenant"])
def test_a_refused_query_fails_loudly(gateway: Gateway, tmp_path: Path, missing: str) -> None:
    token = tmp_path / "token"
    token.write_text("first")
    flags = [f"--prometheus-url={gateway.url}", f"--prometheus-ca-file={gateway.ca}"]
    if missing != "token":
        flags.append(f"--prometheus-bearer-token-file={token}")
    if missing != "tenant":
        flags.append(f"--prometheus-header={TENANT[0]}={TENANT[1]}")
    provider = from_flags(*flags)
    with pytest.raises(QueryFailed, match="HTTP 401: no token or no tenant"):
        provider.query("vector(1)")
    assert not provider.is_online()


def test_an_unknown_ca_and_a_slow_server_fail_loudly(gateway: Gateway, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first")
    common = [
        f"--prometheus-bearer-token-file={token}",
        "--prometheus-header=X-Scope-OrgID=team-a",
    ]
    untrusted = from_flags(f"--prometheus-url={gateway.url}", *common)
    with pytest.raises(QueryFailed, match="CERTIFICATE_VERIFY_FAILED"):
        untrusted.query("vector(1)")

    gateway.gate.delay = 2.0
    slow = from_flags(
        f"--prometheus-url={gateway.url}",
        f"--prometheus-ca-file={gateway.ca}",
        "--prometheus-timeout=0.5",
        *common,
    )
    started = time.monotonic()
    with pytest.raises(QueryFailed, match="unreachable"):
        slow.query("vector(1)")
    assert time.monotonic() - started < 1.9


def test_an_unreadable_token_file_fails_loudly(gateway: Gateway, tmp_path: Path) -> None:
    provider = from_flags(
        f"--prometheus-url={gateway.url}",
        f"--prometheus-ca-file={gateway.ca}",
        f"--prometheus-bearer-token-file={tmp_path / 'absent'}",
    )
    with pytest.raises(QueryFailed, match="bearer token unreadable"):
        provider.query("vector(1)")


@pytest.mark.parametrize(
    "flag",
    [
        "--prometheus-header=NoValue",
        "--prometheus-header=Bad Name=x",
        "--prometheus-header==x",
        "--prometheus-timeout=0",
        "--prometheus-timeout=soon",
    ],
)
def test_bad_metrics_flags_are_refused(flag: str) -> None:
    parser = argparse.ArgumentParser(exit_on_error=False)
    operator_main.add_arguments(parser)
    with pytest.raises((argparse.ArgumentError, SystemExit)):
        parser.parse_args([flag])


def test_no_url_means_no_source() -> None:
    parser = argparse.ArgumentParser()
    operator_main.add_arguments(parser)
    assert operator_main.metrics_source(parser.parse_args([])) is None
