"""The catalog and endpoint access on the real control plane, played by tenants.

Alice owns team A's namespace, Bob team B's: each has namespaced rights on Conch's
resources in their own namespace only (tests/integration/test_tenant.py's Role), plus what
the chart gives every authenticated user: read on CatalogEntries. The operator mirrors a
shared ModelVersion into a cluster-scoped CatalogEntry that Bob can read but nobody but the
operator can write, and removes it when the label goes or the version is deleted.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import boto3
import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from conch import endpointkey
from conch.dev import pki as pkimod
from conch.dev.cluster import Cluster
from conch.dev.s3 import REGION, S3Server, ensure_versitygw, start_versitygw
from conch.dev.toolchain import Toolchain
from tests.support import (
    GROUP,
    VERSION,
    as_user,
    create_service,
    eventually,
    example,
    stays,
    wait_for,
)

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


KEYED_ACCESS = {
    "allowedNamespaces": ["team-b"],
    "consumers": [{"name": "app-a"}, {"name": "app-b"}],
    "keySecretRef": {"name": "owner-key"},
}


@pytest.fixture
def keyed(cluster: Cluster, api: client.ApiClient, namespace: str) -> client.ApiClient:
    """Alice (who may also read Secrets in her namespace, to hand keys out) serves digits
    with two consumers and an owner key; returns her client."""
    rules = [*TENANT_RULES, {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
    alice = as_user(cluster.kubeconfig, api, namespace, "alice", rules)
    client.CoreV1Api(api).create_namespaced_secret(
        namespace, {"metadata": {"name": "owner-key"}, "stringData": {"key": "owner-s3cret"}}
    )
    create_version(alice, namespace, "digits-v1", {})
    create_service(
        alice, namespace, "digits", modelVersion="digits-v1", autoscaling=None, replicas=1,
        access=KEYED_ACCESS,
    )  # fmt: skip
    return alice


def patch_service(api: client.ApiClient, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    return dict(
        custom(api).patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "modelservices", "digits", body
        )
    )


def consumer_key(api: client.ApiClient, namespace: str, consumer: str) -> str | None:
    """The consumer's key as `api` reads it; its Secret is labelled and owned by digits."""
    name = endpointkey.key_secret_name("digits", consumer)
    try:
        secret = client.CoreV1Api(api).read_namespaced_secret(name, namespace)
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    owner = custom(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "modelservices", "digits"
    )
    assert secret.metadata.labels[endpointkey.CONSUMER_LABEL] == consumer
    refs = [(o.uid, o.controller) for o in secret.metadata.owner_references]
    assert refs == [(owner["metadata"]["uid"], True)]
    return base64.b64decode(secret.data["key"]).decode()


def gate_hashes(api: client.ApiClient, namespace: str) -> dict[str, str]:
    name = endpointkey.gate_secret_name("digits")
    gate = client.CoreV1Api(api).read_namespaced_secret(name, namespace)
    return dict(json.loads(base64.b64decode(gate.data["hashes.json"]))["consumers"])


def issued(api: client.ApiClient, namespace: str, *consumers: str) -> dict[str, str] | None:
    """{consumer: key} once exactly `consumers` have keys whose hashes the gate holds."""
    keys = {c: consumer_key(api, namespace, c) for c in consumers}
    found = {c: k for c, k in keys.items() if k is not None}
    digests = {c: hashlib.sha256(k.encode()).hexdigest() for c, k in found.items()}
    ok = len(found) == len(consumers) and gate_hashes(api, namespace) == digests
    return found if ok else None


def test_consumer_keys_are_issued_rotated_and_revoked_for_the_tenant(
    cluster: Cluster,
    api: client.ApiClient,
    namespace: str,
    keyed: client.ApiClient,
    tmp_path: Path,
) -> None:
    """The operator writes each consumer's key Secret in Alice's namespace (she reads it)
    and the gate's Secret of hashes, and never puts a key in a pod spec; a rotation request
    replaces one key; removing a consumer deletes its Secret."""
    alice = keyed
    first = eventually(lambda: issued(alice, namespace, "app-a", "app-b"), what="both keys")
    apps = client.AppsV1Api(api)
    (deployment,) = apps.list_namespaced_deployment(namespace).items
    pod = deployment.spec.template.spec
    triton, gate = pod.containers
    assert (triton.name, gate.name) == ("triton", "gate")
    assert "--http-address=127.0.0.1" in triton.args
    assert [p.container_port for p in gate.ports] == [8000, 8001]
    volumes = {v.name: v.secret.secret_name for v in pod.volumes if v.secret}
    assert volumes == {
        "gate-keys": endpointkey.gate_secret_name("digits"),
        "owner-key": "owner-key",
    }
    everything = str(apps.list_namespaced_deployment(namespace).to_dict())
    assert not any(k in everything for k in [*first.values(), "owner-s3cret"])

    kubeconfig = tenant_kubeconfig(cluster, "alice", namespace, tmp_path / "alice.yaml")

    def conch_keys(*argv: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "conch.cli", "keys", *argv],
            env={**os.environ, "KUBECONFIG": str(kubeconfig)},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout

    assert conch_keys("show", "digits", "app-a") == first["app-a"] + "\n"  # as Alice
    conch_keys("rotate", "digits", "app-a")
    rotated = eventually(
        lambda: (
            (k := issued(alice, namespace, "app-a", "app-b")) and k["app-a"] != first["app-a"] and k
        ),
        what="app-a's key replaced",
    )
    assert rotated["app-b"] == first["app-b"]
    annotations = patch_service(alice, namespace, {})["metadata"].get("annotations") or {}
    assert endpointkey.ROTATE_ANNOTATION not in annotations  # the request was acknowledged

    patch_service(
        alice, namespace, {"spec": {"access": {**KEYED_ACCESS, "consumers": [{"name": "app-a"}]}}}
    )
    eventually(
        lambda: (
            consumer_key(alice, namespace, "app-b") is None and issued(alice, namespace, "app-a")
        ),
        what="app-b revoked",
    )
    assert consumer_key(alice, namespace, "app-a") == rotated["app-a"]


def test_a_key_secret_name_held_by_someone_else_is_never_taken_over(
    api: client.ApiClient, namespace: str, keyed: client.ApiClient
) -> None:
    eventually(lambda: issued(keyed, namespace, "app-a", "app-b"), what="both keys")
    theirs = endpointkey.key_secret_name("digits", "app-c")
    core = client.CoreV1Api(api)
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": theirs}, "stringData": {"key": "not-conch's"}}
    )
    consumers = [{"name": "app-a"}, {"name": "app-b"}, {"name": "app-c"}]
    patch_service(keyed, namespace, {"spec": {"access": {**KEYED_ACCESS, "consumers": consumers}}})

    def degraded_reason() -> str | None:
        """What runs keeps serving (Ready may stay True); Degraded says why."""
        found = patch_service(keyed, namespace, {})
        conds = found.get("status", {}).get("conditions", [])
        degraded = [c for c in conds if c["type"] == "Degraded" and c["status"] == "True"]
        return degraded[0]["reason"] if degraded else None

    eventually(lambda: degraded_reason() == "NameConflict", what="Degraded: NameConflict")
    held = core.read_namespaced_secret(theirs, namespace)
    assert base64.b64decode(held.data["key"]) == b"not-conch's"
    assert not held.metadata.owner_references
    assert set(gate_hashes(api, namespace)) == {"app-a", "app-b"}


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


DOC = Path(__file__).resolve().parents[2] / "docs" / "catalog.md"
PACKAGING = {  # `conch publish` options that take a value and only apply when packaging
    "--name", "--version", "--example", "--out",
}  # fmt: skip


def walkthrough() -> list[tuple[str, str]]:
    """(language, text) of every fenced block of docs/catalog.md's walkthrough (steps 1-4)."""
    text = DOC.read_text()
    steps = text[text.index("## 1. Team A") : text.index("## Access to the endpoint")]
    return re.findall(r"```(\w*)\n(.*?)```", steps, flags=re.S)


def commands(block: str) -> list[list[str]]:
    """The command lines of a sh block: continuations joined, comments dropped."""
    joined = block.replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in joined.splitlines() if line.strip()]


def as_teams(text: str, names: dict[str, str]) -> str:
    """The docs' team-a/-b/-c as this test's namespaces (team-b-apps stays)."""
    return re.sub(r"(?<![\w-])team-([abc])(?![\w-])", lambda m: names[m.group(1)], text)


def model_files(cwd: Path) -> None:
    """What the walkthrough's first command names: the model exported with torch.export
    (a dynamic batch dimension), an example batch and the terms document."""
    import numpy as np
    import torch

    from tests.runtime.packaging import example, trained_teacher

    inputs = example()
    batch = torch.export.Dim("batch")
    program = torch.export.export(
        trained_teacher(),
        (inputs["features"], inputs["category"]),
        dynamic_shapes=({0: batch}, {0: batch}),
    )
    torch.export.save(program, cwd / "digits.pt2")
    np.savez(cwd / "digits-example.npz", **{k: v.numpy() for k, v in inputs.items()})
    (cwd / "digits-terms.md").write_text("Research use only. Inputs are not retained.\n")


class Walk:
    """Three teams, each a namespace and a user with namespaced rights there (plus what the
    walkthrough has it write: A grants, B its key Secret), running commands in one folder
    with their own kubeconfig, the test's S3 store and kubectl on PATH."""

    USERS: ClassVar[dict[str, str]] = {"a": "alice", "b": "bob", "c": "carol"}
    EXTRA: ClassVar[dict[str, dict[str, Any]]] = {
        "a": {"apiGroups": [GROUP], "resources": ["modelaccessgrants"], "verbs": ["create"]},
        "b": {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
    }

    def __init__(
        self, cluster: Cluster, api: client.ApiClient, kubectl: str, s3: S3Server, cwd: Path
    ) -> None:
        self.names = {t: f"team-{t}-{uuid.uuid4().hex[:6]}" for t in "abc"}
        for ns in self.names.values():
            client.CoreV1Api(api).create_namespace({"metadata": {"name": ns}})
        self.tenants = {
            t: as_tenant(cluster, api, self.names[t], user) for t, user in self.USERS.items()
        }
        for t, rule in self.EXTRA.items():
            as_user(cluster.kubeconfig, api, self.names[t], self.USERS[t], [rule], "walkthrough")
        base = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        self.env = {
            t: base | {
                "AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key,
                "AWS_REGION": REGION, "AWS_EC2_METADATA_DISABLED": "true",
                "PATH": f"{Path(kubectl).parent}:{base['PATH']}", "COLUMNS": "250",
                "KUBECONFIG": str(
                    tenant_kubeconfig(cluster, user, self.names[t], cwd / f"{t}.yaml")
                ),
            }
            for t, user in self.USERS.items()
        }  # fmt: skip
        self.s3, self.cwd = s3, cwd

    def run(self, t: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
        """A documented command as team `t`; `conch` is this checkout's."""
        if argv[:2] == ["conch", "publish"]:
            argv = [*argv, "--endpoint", self.s3.endpoint]  # the test's store, not AWS
        if argv[0] == "conch":
            argv = [sys.executable, "-m", "conch.cli", *argv[1:]]
        done = subprocess.run(
            argv, cwd=self.cwd, env=self.env[t], capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, (argv, done.stdout, done.stderr)
        return done

    def shell(self, t: str, block: str) -> None:
        """A documented sh block as team `t`, through bash (it uses `$(...)`)."""
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block], cwd=self.cwd, env=self.env[t],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, (block, done.stderr)


@pytest.mark.usefixtures("catalog_readers")
def test_the_docs_walkthrough_runs_as_written(
    cluster: Cluster,
    api: client.ApiClient,
    toolchain: Toolchain,
    s3: S3Server,
    tmp_path: Path,
) -> None:
    """docs/catalog.md's steps 1-4, each command as written (namespaces renamed), each team
    with its own namespaced rights: A packages, uploads and publishes with terms in one
    `conch publish`, and grants B; B finds it in `conch catalog`, writes its endpoint key,
    accepts the terms and serves it; C, without a grant, is refused with UsageNotGranted."""
    walk = Walk(cluster, api, toolchain.binary("kubectl"), s3, tmp_path)
    names, run, tenants = walk.names, walk.run, walk.tenants
    boto3.client(
        "s3", endpoint_url=s3.endpoint, aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key, region_name=REGION,
    ).create_bucket(Bucket="models")  # fmt: skip
    model_files(tmp_path)
    blocks = [(lang, as_teams(text, names)) for lang, text in walkthrough()]
    publish_sh, grant_yaml, listed_text, find_sh, secret_sh, service_yaml = blocks
    assert [lang for lang, _ in blocks] == ["sh", "yaml", "", "sh", "sh", "yaml"]

    # 1. Team A: one command packages, uploads and publishes
    (published,) = commands(publish_sh[1])
    assert published[:2] == ["conch", "publish"]
    done = run("a", published)
    a, b, c = (names[t] for t in "abc")
    mv = custom(api).get_namespaced_custom_object(
        GROUP, VERSION, a, "modelversions", "digits-1.0.0"
    )
    digest = hashlib.sha256((tmp_path / "digits-terms.md").read_bytes()).hexdigest()
    assert mv["metadata"]["labels"] == SHARED
    assert mv["spec"]["source"]["uri"] == f"s3://models/{a}/digits-1.0.0.tar.gz"
    usage = mv["spec"]["usage"]
    assert usage["terms"] == {"uri": "https://legal.example.com/digits-terms", "sha256": digest}
    assert (usage["allowedNamespaces"], usage["license"]) == ([b], "Apache-2.0")
    assert (tmp_path / "digits-pkg" / "conch.json").is_file(), done.stderr  # --out kept it
    # the package directory published again (packaging options dropped): nothing changes
    again, rest = ["conch", "publish", "digits-pkg"], iter(published[3:])
    for arg in rest:
        if arg in PACKAGING:
            next(rest)  # and its value
        else:
            again.append(arg)
    assert "unchanged" in run("a", again).stderr
    grant = yaml.safe_load(grant_yaml[1])
    custom(tenants["a"]).create_namespaced_custom_object(
        GROUP, VERSION, grant["metadata"]["namespace"], "modelaccessgrants", grant
    )
    # `kubectl get mv` shows what the docs show (but the size and age)
    header, row = listed_text[1].splitlines()[:2]
    shown = run("a", ["kubectl", "get", "mv", "-n", a]).stdout.splitlines()
    assert shown[0].split() == header.split()
    assert [shown[1].split()[i] for i in (0, 1, 2, 3, 5, 6)] == [
        row.split()[i] for i in (0, 1, 2, 3, 5, 6)
    ]

    # 2. Team B finds it
    for argv in commands(find_sh[1]):
        assert "digits" in run("b", argv).stdout
    rows = json.loads(run("b", [*commands(find_sh[1])[0], "-o", "json"]).stdout)
    (found,) = [r for r in rows if r["namespace"] == a]
    assert found["terms"] == f"https://legal.example.com/digits-terms (sha256:{digest})"

    # 3. Team B writes its key, accepts the terms (the digest from the catalog) and serves
    walk.shell("b", secret_sh[1])
    shown_digest = found["terms"].rsplit("(", 1)[1].rstrip(")")
    body = yaml.safe_load(
        service_yaml[1].replace("sha256:<the terms digest shown by conch catalog>", shown_digest)
    )
    body["spec"]["resources"] = {"gpus": 0}  # on the kwok CPU nodes
    custom(tenants["b"]).create_namespaced_custom_object(GROUP, VERSION, b, "modelservices", body)
    wait_for(api, b, "Ready", "True", "Available", timeout=90)
    served = custom(api).get_namespaced_custom_object(GROUP, VERSION, b, "modelservices", "digits")
    assert [t["digest"] for t in served["status"]["acceptedTerms"]] == [f"sha256:{digest}"]

    # 4. Team C, the same ModelService without a grant: refused
    body["metadata"]["namespace"] = c
    custom(tenants["c"]).create_namespaced_custom_object(GROUP, VERSION, c, "modelservices", body)
    wait_for(api, c, "Ready", "False", "UsageNotGranted")
    assert client.AppsV1Api(api).list_namespaced_deployment(c).items == []
    for ns in names.values():
        client.CoreV1Api(api).delete_namespace(ns)


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
