"""Prometheus' HTTP API (`/api/v1/query`), instant vector or scalar results."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request

from conch.providers.errors import QueryFailed


class Prometheus:
    def __init__(self, address: str, timeout: float = 5.0) -> None:
        self.address = address.rstrip("/")
        self.timeout = timeout

    def _get(self, path: str, params: dict[str, str] | None = None) -> bytes:
        url = f"{self.address}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:500]
            raise QueryFailed(f"prometheus {path}: HTTP {error.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as error:
            raise QueryFailed(f"prometheus at {self.address} unreachable: {error}") from None

    def query(self, expression: str) -> float | None:
        body = json.loads(self._get("/api/v1/query", {"query": expression}))
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
