"""conch.rest against the real API server: the verbs the operator uses, the API's own
refusals (404, 409, 422, 403, 401) with their messages, a watch's lines, and logins from a
kubeconfig and from a token file that is read again."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from conch import rest
from conch.dev import pki
from conch.dev.cluster import Cluster
from conch.errors import ApiError, InvalidSpec
from conch.kopf_alone import kopf
from conch.kube import OWNED, Kube
from conch.rest import Login, Rest, RestError

pytestmark = pytest.mark.integration

CONFIG_MAPS = "/api/v1/namespaces/{}/configmaps"


def config_map(namespace: str, name: str, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }


def test_verbs_and_refusals(rest: Rest, namespace: str) -> None:
    path = CONFIG_MAPS.format(namespace)
    status, created = rest.request("POST", path, body=config_map(namespace, "a", k="1"))
    assert status == 201 and created["metadata"]["name"] == "a"
    with pytest.raises(RestError) as exists:
        rest.request("POST", path, body=config_map(namespace, "a"))
    assert exists.value.status == 409 and "already exists" in exists.value.message

    _, listed = rest.request("GET", path, [("fieldSelector", "metadata.name=a")])
    assert [i["data"] for i in listed["items"]] == [{"k": "1"}]
    _, patched = rest.request(
        "PATCH",
        f"{path}/a",
        body={"data": {"k": "2"}},
        content_type="application/merge-patch+json",
    )
    assert patched["data"] == {"k": "2"}
    with pytest.raises(RestError) as invalid:
        rest.request("POST", path, body=config_map(namespace, "Not_A_Name"))
    assert invalid.value.status == 422 and "Not_A_Name" in invalid.value.message

    rest.request("DELETE", f"{path}/a")
    with pytest.raises(RestError) as gone:
        rest.request("GET", f"{path}/a")
    assert gone.value.status == 404 and '"a" not found' in gone.value.message


def test_a_watch_yields_one_line_per_event(rest: Rest, namespace: str) -> None:
    path = CONFIG_MAPS.format(namespace)
    _, listed = rest.request("GET", path)
    # only "w": a new namespace's kube-root-ca.crt may be published after the list
    query = [
        ("watch", "true"),
        ("resourceVersion", listed["metadata"]["resourceVersion"]),
        ("fieldSelector", "metadata.name=w"),
    ]
    lines = rest.stream(path, [*query, ("timeoutSeconds", "30")], timeout=40)
    writer = threading.Timer(
        0.5, lambda: rest.request("POST", path, body=config_map(namespace, "w", k="v" * 70_000))
    )  # one event larger than a read chunk
    writer.start()
    try:
        first = json.loads(next(lines))
        assert first["type"] == "ADDED" and first["object"]["data"]["k"] == "v" * 70_000
    finally:
        lines.close()
        writer.join()


def test_kube_maps_refusals_as_before(
    api: client.ApiClient, cluster: Cluster, rest: Rest, namespace: str
) -> None:
    """404 -> None, 422 -> InvalidSpec, 403 -> an ApiError retrying cannot change."""
    kube = Kube(rest)
    service = OWNED["Service"]
    assert kube.get(service, namespace, "nothing") is None
    bad = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "bad", "namespace": namespace},
        "spec": {"ports": [{"port": 70000}]},
    }
    with pytest.raises(InvalidSpec, match="70000"):
        kube.apply(bad)

    nobody = Kube(Rest(token_login(api, cluster, namespace, "nobody"), pool_size=1))
    with pytest.raises(ApiError) as refused:
        nobody.get(service, namespace, "anything")
    assert refused.value.status == 403 and not refused.value.temporary
    assert "nobody" in refused.value.message


def token_login(api: client.ApiClient, cluster: Cluster, namespace: str, account: str) -> Login:
    """A ServiceAccount with no rights, logged in by its token."""
    core = client.CoreV1Api(api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": account}})
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
    )
    token = core.create_namespaced_service_account_token(account, namespace, request).status.token
    ca = pki.load(cluster.directory).ca_cert
    return Login(kopf.ConnectionInfo(server=cluster.server, ca_path=str(ca), token=token))


def test_a_token_file_is_read_again(
    api: client.ApiClient,
    cluster: Cluster,
    namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """How a pod's rotated ServiceAccount token reaches the client, without a restart."""
    monkeypatch.setattr(rest, "TOKEN_TTL", 0.0)
    good = token_login(api, cluster, namespace, "reader")
    token_file = tmp_path / "token"
    token_file.write_text("not-a-token")
    stale = kopf.ConnectionInfo(server=cluster.server, ca_path=good.info.ca_path, token="x")
    client_ = Rest(Login(stale, token_file), pool_size=1)
    with pytest.raises(RestError) as unauthorized:
        client_.request("GET", "/version")
    assert unauthorized.value.status == 401
    token_file.write_text(str(good.info.token))
    status, version = client_.request("GET", "/version")
    assert status == 200 and version["gitVersion"].startswith("v1.")


def test_login_reads_the_kubeconfig(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    found = rest.login()
    assert found.info.server == cluster.server and found.token_file is None
    _, namespaces = Rest(found, pool_size=1).request("GET", "/api/v1/namespaces")
    assert "kube-system" in {n["metadata"]["name"] for n in namespaces["items"]}
