"""The catalog and endpoint access on the real control plane, played by tenants.

Alice owns team A's namespace, Bob team B's: each has namespaced rights on Conch's
resources in their own namespace only (tests/integration/test_tenant.py's Role), plus what
the chart gives every authenticated user: read on CatalogEntries. The operator mirrors a
shared ModelVersion into a cluster-scoped CatalogEntry that Bob can read but nobody but the
operator can write, and removes it when the label goes or the version is deleted.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from conch.dev import pki as pkimod
from conch.dev.cluster import Cluster
from conch.dev.s3 import REGION, S3Server, ensure_versitygw, start_versitygw
from conch_runtime.manifest import Manifest
from conch_runtime.modelversion import MODELVERSION, dump_yaml
from tests.support import GROUP, VERSION, as_user, create_service, eventually, example, stays

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("operator")]

TENANT_RULES = [
    {
        "apiGroups": [GROUP],
        "resources": ["modelservices", "modelversions"],
        "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
    },
]
READER = {  # the chart's <release>-catalog-reader, bound to system:authenticated
    "apiGroups": [GROUP],
    "resources": ["catalogentries"],
    "verbs": ["get", "list", "watch"],
}
SHARED = {"serving.conch.dev/catalog": "shared"}
TERMS = {"uri": "https://legal.example.com/digits", "sha256": "c" * 64}


@pytest.fixture(scope="module")
def catalog_readers(api: client.ApiClient) -> Iterator[None]:
    rbac = client.RbacAuthorizationV1Api(api)
    name = f"catalog-reader-{uuid.uuid4().hex[:6]}"
    rbac.create_cluster_role({"metadata": {"name": name}, "rules": [READER]})
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": name,
            },
            "subjects": [
                {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Group",
                    "name": "system:authenticated",
                }
            ],
        }
    )
    yield
    rbac.delete_cluster_role_binding(name)
    rbac.delete_cluster_role(name)


def as_tenant(cluster: Cluster, api: client.ApiClient, ns: str, user: str) -> client.ApiClient:
    return as_user(cluster.kubeconfig, api, ns, user, TENANT_RULES)


@pytest.fixture
def other_namespace(api: client.ApiClient) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


def custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def create_version(
    api: client.ApiClient, ns: str, name: str, labels: dict[str, str], **usage: Any
) -> None:
    body = example("modelversion.yaml")
    body["metadata"] = {"name": name, "labels": labels}
    if usage:
        body["spec"]["usage"] = usage
    custom(api).create_namespaced_custom_object(GROUP, VERSION, ns, "modelversions", body)


def entry(api: client.ApiClient, name: str) -> dict[str, Any] | None:
    try:
        return dict(custom(api).get_cluster_custom_object(GROUP, VERSION, "catalogentries", name))
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def status_of(call: Any) -> int:
    try:
        call()
    except ApiException as error:
        return int(error.status)
    return 200


@pytest.mark.usefixtures("catalog_readers")
def test_shared_version_is_mirrored_readable_by_all_and_removed(
    cluster: Cluster, api: client.ApiClient, namespace: str, other_namespace: str
) -> None:
    alice = as_tenant(cluster, api, namespace, "alice")
    bob = as_tenant(cluster, api, other_namespace, "bob")
    create_version(alice, namespace, "digits-v1", SHARED)
    create_version(alice, namespace, "private-v1", {})
    create_service(
        alice, namespace, "digits", modelVersion="digits-v1", autoscaling=None, replicas=0
    )
    name = f"{namespace}.digits-v1"

    mirrored = eventually(
        lambda: (e := entry(bob, name)) and e["spec"].get("servedBy") and e,
        what="the shared version's entry, served by digits",
    )
    spec = mirrored["spec"]
    assert spec["modelVersion"] == {"namespace": namespace, "name": "digits-v1"}
    assert (spec["model"], spec["version"], spec["format"]) == ("digits", "1.0.0", "python")
    assert spec["sizeBytes"] == 91342 and spec["compression"]["accuracy"] == 0.969
    assert spec["servedBy"] == [{"namespace": namespace, "service": "digits"}]
    assert "source" not in spec  # where the bytes live is not published
    # Bob lists the catalog, yet cannot read Alice's ModelVersions themselves
    listed = custom(bob).list_cluster_custom_object(GROUP, VERSION, "catalogentries")
    names = {i["metadata"]["name"] for i in listed["items"]}
    assert name in names and f"{namespace}.private-v1" not in names
    assert (
        status_of(
            lambda: custom(bob).get_namespaced_custom_object(
                GROUP, VERSION, namespace, "modelversions", "digits-v1"
            )
        )
        == 403
    )
    # ... and neither tenant can write the catalog: only the operator does
    for tenant in (alice, bob):
        forged = {**mirrored, "metadata": {"name": f"{namespace}.forged"}}
        assert (
            status_of(
                lambda t=tenant, f=forged: custom(t).create_cluster_custom_object(
                    GROUP, VERSION, "catalogentries", f
                )
            )
            == 403
        )
        assert (
            status_of(
                lambda t=tenant: custom(t).delete_cluster_custom_object(
                    GROUP, VERSION, "catalogentries", name
                )
            )
            == 403
        )
        assert (
            status_of(
                lambda t=tenant: custom(t).patch_cluster_custom_object(
                    GROUP, VERSION, "catalogentries", name, {"spec": {"license": "MIT"}}
                )
            )
            == 403
        )
    # an entry tampered with by an admin is put back
    custom(api).patch_cluster_custom_object(
        GROUP, VERSION, "catalogentries", name, {"spec": {"model": "tampered"}}
    )
    eventually(lambda: (e := entry(api, name)) and e["spec"]["model"] == "digits", what="repaired")

    # the label goes: unlisted; back: listed; the version deleted: unlisted
    labels_path = {"metadata": {"labels": {"serving.conch.dev/catalog": None}}}
    custom(alice).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "modelversions", "digits-v1", labels_path
    )
    eventually(lambda: entry(api, name) is None, what="entry removed with the label")
    custom(alice).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "modelversions", "digits-v1", {"metadata": {"labels": SHARED}}
    )
    eventually(lambda: entry(api, name), what="entry back with the label")
    custom(alice).delete_namespaced_custom_object(
        GROUP, VERSION, namespace, "modelversions", "digits-v1"
    )
    eventually(lambda: entry(api, name) is None, what="entry removed with the version")
    stays(lambda: entry(api, f"{namespace}.private-v1") is None, 2, "private stays unlisted")


@pytest.mark.usefixtures("catalog_readers")
def test_conch_catalog_shows_what_the_caller_may_see(
    cluster: Cluster,
    api: client.ApiClient,
    namespace: str,
    other_namespace: str,
    tmp_path: Path,
) -> None:
    """`conch catalog` with Bob's kubeconfig: Alice's shared version and Bob's own private
    one, never Alice's private one."""
    alice = as_tenant(cluster, api, namespace, "alice")
    bob = as_tenant(cluster, api, other_namespace, "bob")
    create_version(alice, namespace, "digits-v1", SHARED)
    create_version(alice, namespace, "alice-private", {})
    create_version(bob, other_namespace, "bob-private", {})
    eventually(lambda: entry(api, f"{namespace}.digits-v1"), what="the shared entry")

    path = tenant_kubeconfig(cluster, "bob", other_namespace, tmp_path / "bob.kubeconfig")
    env = {**os.environ, "KUBECONFIG": str(path)}
    out = subprocess.run(
        [sys.executable, "-m", "conch.cli", "catalog", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = {(r["namespace"], r["modelVersion"]): r for r in json.loads(out.stdout)}
    assert (namespace, "digits-v1") in rows and rows[(namespace, "digits-v1")]["shared"]
    assert (other_namespace, "bob-private") in rows
    assert not rows[(other_namespace, "bob-private")]["shared"]
    assert (namespace, "alice-private") not in rows
    table = subprocess.run(
        [sys.executable, "-m", "conch.cli", "catalog"],
        env={**env, "COLUMNS": "250"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "digits" in table.stdout and "bob-private" in table.stdout


def test_network_policy_follows_access_and_is_pruned(
    cluster: Cluster, api: client.ApiClient, namespace: str
) -> None:
    alice = as_tenant(cluster, api, namespace, "alice")
    create_version(alice, namespace, "digits-v1", {})
    access = {"allowedNamespaces": ["team-b"], "pods": [{"podSelector": {"app": "web"}}]}
    create_service(
        alice,
        namespace,
        "digits",
        modelVersion="digits-v1",
        autoscaling=None,
        replicas=0,
        access=access,
    )
    net = client.NetworkingV1Api(api)

    def policy() -> Any:
        try:
            return net.read_namespaced_network_policy("digits", namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    written = eventually(lambda: policy(), what="the NetworkPolicy")
    (rule,) = written.spec.ingress  # no metrics scrape namespace set: no second rule
    assert [p.port for p in rule.ports] == [8000, 8001]
    assert [f.namespace_selector.match_labels for f in rule._from if f.namespace_selector] == [
        {"kubernetes.io/metadata.name": "team-b"}
    ]
    assert [f.pod_selector.match_labels for f in rule._from if f.pod_selector] == [{"app": "web"}]
    # a tenant cannot loosen it by hand: it is the operator's
    assert (
        status_of(
            lambda: client.NetworkingV1Api(alice).delete_namespaced_network_policy(
                "digits", namespace
            )
        )
        == 403
    )
    # access unset: the policy opens the ports to every caller again
    custom(alice).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "modelservices", "digits", {"spec": {"access": None}}
    )
    eventually(
        lambda: (p := policy()) and p.spec.ingress and p.spec.ingress[0]._from is None,
        what="an open policy",
    )
    # the service deleted: the garbage collector prunes its policy
    custom(alice).delete_namespaced_custom_object(
        GROUP, VERSION, namespace, "modelservices", "digits"
    )
    eventually(lambda: policy() is None, what="the policy pruned")


def test_endpoint_key_reaches_triton_by_reference_and_rotation_rolls_the_pods(
    cluster: Cluster, api: client.ApiClient, namespace: str
) -> None:
    """The pod spec names the owner's Secret, never its value; a rewritten Secret (then a
    touched ModelService) changes the pod template, so the Deployment rolls the pods."""
    alice = as_tenant(cluster, api, namespace, "alice")
    core = client.CoreV1Api(api)
    secret = core.create_namespaced_secret(
        namespace, {"metadata": {"name": "digits-key"}, "stringData": {"key": "first-s3cret"}}
    )
    create_version(alice, namespace, "digits-v1", {})
    access = {"allowedNamespaces": ["team-b"], "keySecretRef": {"name": "digits-key"}}
    create_service(
        alice, namespace, "digits", modelVersion="digits-v1", autoscaling=None, replicas=1,
        access=access,
    )  # fmt: skip
    apps = client.AppsV1Api(api)

    def template(version: str) -> Any:
        items = apps.list_namespaced_deployment(namespace).items
        for d in items:
            annotations = d.spec.template.metadata.annotations or {}
            if annotations.get("serving.conch.dev/endpoint-key-version") == version:
                return d.spec.template
        return None

    first = eventually(lambda: template(secret.metadata.resource_version), what="the Deployment")
    (triton,) = first.spec.containers
    env = {e.name: e for e in triton.env}
    ref = env["CONCH_ENDPOINT_KEY"].value_from.secret_key_ref
    assert (ref.name, ref.key) == ("digits-key", "key")
    assert any(
        a.startswith("--http-restricted-api=")
        and a.endswith(":conch-endpoint-key=$(CONCH_ENDPOINT_KEY)")
        for a in triton.args
    )
    assert any(a.startswith("--grpc-restricted-protocol=") for a in triton.args)
    assert "first-s3cret" not in str(apps.list_namespaced_deployment(namespace).to_dict())

    rotated = core.patch_namespaced_secret(
        "digits-key", namespace, {"stringData": {"key": "second-s3cret"}}
    )
    custom(alice).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "modelservices", "digits",
        {"metadata": {"annotations": {"example.com/key-rotated": "1"}}},
    )  # fmt: skip
    eventually(lambda: template(rotated.metadata.resource_version), what="the rolled template")


@pytest.mark.usefixtures("catalog_readers")
def test_kubectl_get_shows_the_essentials(
    api: client.ApiClient, namespace: str, kubectl: Any
) -> None:
    create_version(api, namespace, "digits-v1", SHARED, license="Apache-2.0", terms=TERMS)
    table = kubectl("get", "mv", "-n", namespace)
    header, row = table.splitlines()[:2]
    assert header.split() == [
        "NAME",
        "MODEL",
        "VERSION",
        "FORMAT",
        "SIZE",
        "LICENSE",
        "SHARED",
        "AGE",
    ]
    assert row.split()[:7] == [
        "digits-v1",
        "digits",
        "1.0.0",
        "python",
        "91342",
        "Apache-2.0",
        "shared",
    ]
    wide = kubectl("get", "mv", "-n", namespace, "-o", "wide").splitlines()[0].split()
    assert wide[7:9] == ["ACCURACY", "USED-BY"]
    name = f"{namespace}.digits-v1"
    eventually(lambda: entry(api, name), what="the entry")
    entries = kubectl("get", "catalogentries", name).splitlines()
    assert entries[0].split()[:8] == [
        "NAME", "MODEL", "VERSION", "NAMESPACE", "FORMAT", "SIZE", "LICENSE", "ACCURACY",
    ]  # fmt: skip
    assert entries[1].split()[1:8] == [
        "digits", "1.0.0", namespace, "python", "91342", "Apache-2.0", "0.969",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    """A real S3-compatible store (versitygw) on 127.0.0.1."""
    with tempfile.TemporaryDirectory(prefix="conch-s3-") as root:
        server = start_versitygw(ensure_versitygw(), Path(root))
        try:
            yield server
        finally:
            server.stop()


def tenant_kubeconfig(cluster: Cluster, user: str, namespace: str, path: Path) -> Path:
    """A kubeconfig that authenticates as `user` (a client certificate signed by the
    cluster's CA), in `namespace`: the user's rights and nothing more. (A kubeconfig's
    `as:` would not do: the Python client ignores impersonation settings.)"""
    cert, key = pkimod.issue(pkimod.load(cluster.directory), path.with_suffix(""), user)
    kubeconfig = yaml.safe_load(cluster.kubeconfig.read_text())
    kubeconfig["users"] = [
        {"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}
    ]
    for context in kubeconfig["contexts"]:
        context["context"] |= {"user": user, "namespace": namespace}
    path.write_text(yaml.safe_dump(kubeconfig))
    return path


def package(root: Path) -> Path:
    """A package directory as `conch package` leaves it: manifest, artifact, ModelVersion."""
    out = root / "pkg"
    out.mkdir()
    data = b"a packaged Triton repository, as far as S3 is concerned\n"
    digest = hashlib.sha256(data).hexdigest()
    (out / "digits-1.0.0.tar.gz").write_bytes(data)
    Manifest(
        model="digits",
        version="1.0.0",
        format="python",
        model_file="digits/1/model.pt2",
        signature={},
        artifact="digits-1.0.0.tar.gz",
        artifact_sha256=digest,
        artifact_bytes=len(data),
    ).write(out)
    mv = example("modelversion.yaml")
    mv["spec"]["source"] = {"uri": (out / "digits-1.0.0.tar.gz").as_uri(), "sha256": digest}
    dump_yaml(mv, out / MODELVERSION)
    return out


@pytest.mark.usefixtures("catalog_readers")
def test_alice_publishes_with_terms_and_bob_finds_it(
    cluster: Cluster,
    api: client.ApiClient,
    namespace: str,
    other_namespace: str,
    s3: S3Server,
    tmp_path: Path,
) -> None:
    """`conch publish` as Alice (her rights only): the artifact lands in S3, the ModelVersion
    with terms and the shared label in her namespace; `conch catalog` as Bob lists it."""
    as_tenant(cluster, api, namespace, "alice")
    as_tenant(cluster, api, other_namespace, "bob")
    boto3.client(
        "s3",
        endpoint_url=s3.endpoint,
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
        region_name=REGION,
    ).create_bucket(Bucket="team-a-models")
    terms = tmp_path / "terms.md"
    terms.write_text("Research use only. Inputs are not retained.\n")
    env = {
        k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")
    } | {
        "AWS_ACCESS_KEY_ID": s3.access_key,
        "AWS_SECRET_ACCESS_KEY": s3.secret_key,
        "AWS_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "KUBECONFIG": str(tenant_kubeconfig(cluster, "alice", namespace, tmp_path / "a.yaml")),
    }  # fmt: skip
    published = subprocess.run(
        [
            sys.executable, "-m", "conch.cli", "publish", str(package(tmp_path)),
            "--to", "s3://team-a-models/digits", "--endpoint", s3.endpoint, "--share",
            "--license", "Apache-2.0", "--terms-uri", "https://legal.example.com/digits",
            "--terms-file", str(terms), "--purpose", "research",
            "--allow-namespace", other_namespace,
        ],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert published.returncode == 0, published.stderr
    mv = custom(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "modelversions", "digits-v1"
    )
    digest = hashlib.sha256(terms.read_bytes()).hexdigest()
    assert mv["metadata"]["labels"] == SHARED
    assert mv["spec"]["source"]["uri"] == "s3://team-a-models/digits/digits-1.0.0.tar.gz"
    assert mv["spec"]["usage"]["terms"] == {
        "uri": "https://legal.example.com/digits",
        "sha256": digest,
    }
    assert mv["spec"]["usage"]["allowedNamespaces"] == [other_namespace]
    eventually(lambda: entry(api, f"{namespace}.digits-v1"), what="the published entry")
    again = subprocess.run(  # publishing the same version again changes nothing
        published.args, env=env, capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0 and "unchanged" in again.stderr, again.stderr

    bob = {
        **env,
        "KUBECONFIG": str(tenant_kubeconfig(cluster, "bob", other_namespace, tmp_path / "b.yaml")),
    }
    listed = subprocess.run(
        [sys.executable, "-m", "conch.cli", "catalog", "-o", "yaml"],
        env=bob, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    (row,) = [r for r in yaml.safe_load(listed.stdout) if r["namespace"] == namespace]
    assert (row["model"], row["license"], row["shared"]) == ("digits", "Apache-2.0", True)
    assert row["terms"] == f"https://legal.example.com/digits (sha256:{digest})"


@pytest.mark.usefixtures("catalog_readers")
def test_served_by_names_granted_consumers_in_other_namespaces(
    cluster: Cluster, api: client.ApiClient, namespace: str, other_namespace: str
) -> None:
    """Bob's ModelService serving Alice's version (granted) shows in the entry's servedBy;
    it leaves when the grant goes (refused: it serves nothing) and comes back with it."""
    alice = as_tenant(cluster, api, namespace, "alice")
    bob = as_tenant(cluster, api, other_namespace, "bob")
    create_version(alice, namespace, "digits-v1", SHARED, allowedNamespaces=[other_namespace])
    grant = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelAccessGrant",
        "metadata": {"name": "digits"},
        "spec": {"from": [{"namespace": other_namespace}], "to": [{"model": "digits"}]},
    }
    grants = (GROUP, VERSION, namespace, "modelaccessgrants")
    custom(api).create_namespaced_custom_object(*grants, grant)
    create_service(
        bob, other_namespace, "scorer", modelVersion="digits-v1", modelNamespace=namespace,
        autoscaling=None, replicas=0, resources={"gpus": 0},
    )  # fmt: skip
    name = f"{namespace}.digits-v1"
    bobs = [{"namespace": other_namespace, "service": "scorer"}]

    def served_by() -> list[dict[str, str]] | None:
        found = entry(api, name)
        return list(found["spec"].get("servedBy", [])) if found else None

    eventually(lambda: served_by() == bobs, what="Bob's service in servedBy")
    custom(api).delete_namespaced_custom_object(*grants, "digits")
    eventually(lambda: served_by() == [], what="servedBy without the grant")
    custom(api).create_namespaced_custom_object(*grants, grant)
    eventually(lambda: served_by() == bobs, what="back with the grant")
    custom(bob).delete_namespaced_custom_object(
        GROUP, VERSION, other_namespace, "modelservices", "scorer"
    )
    eventually(lambda: served_by() == [], what="servedBy emptied")
