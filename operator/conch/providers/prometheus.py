"""Prometheus' HTTP API (`/api/v1/query`), instant vector or scalar results.

Speaks to plain Prometheus and to the multi-tenant stores in front of it (Thanos, Mimir,
Cortex, managed Prometheus): a bearer token read from a file on every request (a mounted
Secret rotates under a running operator), a CA bundle for private TLS, and fixed extra
headers such as `X-Scope-OrgID`.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from conch.providers.errors import QueryFailed

__all__ = ["Prometheus", "Source"]


@dataclass(frozen=True)
class Source:
    """Where the metrics come from and how to authenticate; built from operator flags."""

    url: str
    bearer_token_file: Path | None = None
    ca_file: Path | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 5.0


def _verify(ca_file: Path | None) -> ssl.SSLContext | bool:
    if ca_file is None:
        return True
    return ssl.create_default_context(cafile=str(ca_file))


class Prometheus:
    def __init__(self, source: Source, transport: httpx.BaseTransport | None = None) -> None:
        self.source = source
        self.address = source.url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.address,
            headers=dict(source.headers),
            verify=_verify(source.ca_file),
            timeout=httpx.Timeout(source.timeout),
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def _auth(self) -> dict[str, str]:
        """The token as it is now: read per request, so a rotated Secret is picked up."""
        if self.source.bearer_token_file is None:
            return {}
        try:
            token = self.source.bearer_token_file.read_text().strip()
        except OSError as error:
            raise QueryFailed(f"prometheus bearer token unreadable: {error}") from None
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _get(self, path: str, params: dict[str, str] | None = None) -> httpx.Response:
        try:
            response = self._client.get(path, params=params, headers=self._auth())
        except httpx.HTTPError as error:
            raise QueryFailed(f"prometheus at {self.address} unreachable: {error}") from None
        if response.status_code >= 400:
            detail = response.text[:500]
            raise QueryFailed(f"prometheus {path}: HTTP {response.status_code}: {detail}")
        return response

    def query(self, expression: str) -> float | None:
        try:
            body: dict[str, Any] = self._get("/api/v1/query", {"query": expression}).json()
        except ValueError as error:
            raise QueryFailed(f"prometheus answered no JSON: {error}") from None
        if body.get("status") != "success":
            raise QueryFailed(f"prometheus query failed: {body.get('error', body)}")
        data = body["data"]
        if data["resultType"] == "scalar":
            values = [data["result"][1]]
        elif data["resultType"] == "vector":
            values = [item["value"][1] for item in data["result"]]
        else:
            raise QueryFailed(f"expected a scalar or vector, got {data['resultType']}")
        if not values:
            return None
        if len(values) > 1:
            raise QueryFailed(f"expected one series, got {len(values)}: aggregate the query")
        value = float(values[0])
        return None if math.isnan(value) else value

    def is_online(self) -> bool:
        try:
            self._get("/-/ready")
        except QueryFailed:
            return False
        return True
