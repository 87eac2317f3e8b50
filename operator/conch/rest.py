"""A thin client for the Kubernetes REST API: one pool of connections, JSON in and out.

The operator needs a handful of verbs (get, list, watch, apply, patch, create, delete) on
paths `conch.kube.Kind` builds; the kubernetes client package costs about 55 MiB of
imports to do the same. Credentials are kopf's `ConnectionInfo` (its SSL context and
headers), read by `login`: in a pod, the ServiceAccount's token (re-read as the kubelet
rotates it); elsewhere, $KUBECONFIG or ~/.kube/config.

Every answer of 400 or more raises `RestError` with the API's own message; no answer at
all is status 0. Mapping those onto what Conch does about them is `conch.kube`'s job.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import urllib3

from conch.kopf_alone import kopf

log = logging.getLogger("conch.rest")

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_TTL = 60.0
"""Seconds a token read from a file is used before the file is read again."""

Query = list[tuple[str, str]]


class RestError(Exception):
    """The API answered `status` >= 400 (its Status message in `message`), or did not
    answer at all (status 0)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status} {message}" if status else message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Login:
    """Where the API is and who we are; `token_file` is read again every `TOKEN_TTL`."""

    info: kopf.ConnectionInfo
    token_file: Path | None = None


def in_cluster() -> Login | None:
    """The pod's ServiceAccount, as client-go finds it (KUBERNETES_SERVICE_HOST/PORT)."""
    host, port = (
        os.environ.get("KUBERNETES_SERVICE_HOST"),
        os.environ.get("KUBERNETES_SERVICE_PORT"),
    )
    token = SERVICE_ACCOUNT / "token"
    if not (host and port and token.exists()):
        return None
    ca = SERVICE_ACCOUNT / "ca.crt"
    namespace = SERVICE_ACCOUNT / "namespace"
    server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    info = kopf.ConnectionInfo(
        server=server,
        ca_path=str(ca) if ca.exists() else None,
        token=token.read_text().strip(),
        default_namespace=namespace.read_text().strip() if namespace.exists() else None,
    )
    return Login(info, token)


def login() -> Login:
    """In a pod: its ServiceAccount; otherwise kopf's reading of $KUBECONFIG (client
    certificates, tokens; no exec plugins)."""
    found = in_cluster()
    if found is not None:
        return found
    info = kopf.login_with_kubeconfig(settings=kopf.OperatorSettings())
    if info is None:
        raise kopf.LoginError("no in-cluster ServiceAccount, no $KUBECONFIG, no ~/.kube/config")
    return Login(info)


class Rest:
    """Requests to one API server, from any thread (a pool of `pool_size` connections)."""

    def __init__(self, credentials: Login | kopf.ConnectionInfo, pool_size: int = 16) -> None:
        self.login = (
            credentials if isinstance(credentials, Login) else Login(credentials, token_file=None)
        )
        info = self.login.info
        url = urlsplit(info.server)
        self._prefix = url.path.rstrip("/")
        options: dict[str, Any] = {
            "maxsize": pool_size,
            "block": False,
            "retries": urllib3.Retry(total=3, connect=3, read=1, redirect=0, status=0),
        }
        if url.scheme == "https":
            options["ssl_context"] = info.as_ssl_context()
        self._pool = urllib3.connection_from_url(f"{url.scheme}://{url.netloc}", **options)
        self._headers = {"User-Agent": "conch-operator", **info.as_http_headers()}
        self._token_read = time.monotonic()
        self._lock = threading.Lock()

    def _auth(self) -> dict[str, str]:
        token_file = self.login.token_file
        if token_file is not None and time.monotonic() - self._token_read > TOKEN_TTL:
            with self._lock:
                try:
                    token = token_file.read_text().strip()
                except OSError as error:
                    log.warning("reading %s: %s; keeping the last token", token_file, error)
                else:
                    self._headers = {**self._headers, "Authorization": f"Bearer {token}"}
                self._token_read = time.monotonic()
        return self._headers

    def request(
        self,
        method: str,
        path: str,
        query: Query | None = None,
        body: Any = None,
        content_type: str = "application/json",
        accept: str = "application/json",
        timeout: float = 30,
    ) -> tuple[int, Any]:
        """One request; (status, the answer's JSON, {} when empty)."""
        response = self._send(method, path, query, body, content_type, accept, timeout, False)
        data = response.data
        return response.status, (json.loads(data) if data else {})

    def stream(self, path: str, query: Query, timeout: float) -> Generator[bytes, None, None]:
        """The lines of a long answer (a watch), as they come; the connection goes back to
        the pool when the iterator is closed or exhausted."""
        response = self._send("GET", path, query, None, "", "application/json", timeout, True)
        try:
            pending = b""
            for chunk in response.stream(64 * 1024, decode_content=False):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                yield from (line for line in lines if line)
            if pending:
                yield pending
        finally:
            response.release_conn()

    def _send(
        self,
        method: str,
        path: str,
        query: Query | None,
        body: Any,
        content_type: str,
        accept: str,
        timeout: float,
        stream: bool,
    ) -> urllib3.BaseHTTPResponse:
        url = self._prefix + path + (f"?{urlencode(query)}" if query else "")
        headers = {**self._auth(), "Accept": accept}
        payload = None
        if body is not None:
            headers["Content-Type"] = content_type
            payload = json.dumps(body, separators=(",", ":")).encode()
        try:
            response = self._pool.urlopen(
                method,
                url,
                body=payload,
                headers=headers,
                timeout=urllib3.Timeout(connect=10, read=timeout),
                preload_content=not stream,
                redirect=False,
            )
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise RestError(0, str(error)) from None
        if response.status >= 400:
            data = response.data
            response.release_conn()
            raise RestError(response.status, _message(response.status, data))
        return response


def _message(status: int, data: bytes) -> str:
    """The Status object's message, else the first bytes of the answer."""
    try:
        return str(json.loads(data)["message"])
    except (TypeError, ValueError, KeyError):
        return data[:200].decode(errors="replace") or f"HTTP {status}"
