"""The Helm chart (charts/conch): lint and schema, rendered objects in both RBAC modes, and
installs on the real control plane (Deployment Available on kwok, PodSecurity `restricted`
admission, and what the operator's ServiceAccount can and cannot do)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from conch import cli, operator_main, podflags
from conch.api.modelservice import ModelService
from conch.api.modelversion import ModelVersion
from conch.artifacts import ArtifactAccess
from conch.builders import PodSettings
from conch.dev.cluster import Cluster
from conch.dev.incluster import sandbox_values
from conch.dev.operator import OperatorProcess
from conch.dev.prometheus import PrometheusProcess
from conch.dev.toolchain import Toolchain
from conch.dev.traffic import Backends
from conch.policy import PodPolicy
from conch.providers import Source
from tests.integration.helm import CHART, KUBE_VERSION, Helm
from tests.integration.test_rollout import FAST_ROLLOUT, phase, promoted, start_rollout, traffic
from tests.support import create_service, create_version, eventually, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SERVICE_MONITOR_API = "monitoring.coreos.com/v1/ServiceMonitor"
POLICY_FLAGS = ("--allowed-", "--require-image-digest")

WRITE = {"get", "list", "watch", "create", "update", "patch", "delete"}
EXPECTED_RULES: dict[tuple[str, str], set[str]] = {
    ("serving.conch.dev", "modelservices"): {"get", "list", "watch", "patch", "update"},
    ("serving.conch.dev", "modelversions"): {"get", "list", "watch", "patch", "update"},
    ("serving.conch.dev", "modelservices/status"): {"get", "patch", "update"},
    ("serving.conch.dev", "modelversions/status"): {"get", "patch", "update"},
    ("serving.conch.dev", "modelservices/finalizers"): {"update"},
    ("serving.conch.dev", "modelaccessgrants"): {"get", "list", "watch"},  # read-only
    ("apps", "deployments"): WRITE,
    ("", "services"): WRITE,
    ("autoscaling", "horizontalpodautoscalers"): WRITE,
    ("policy", "poddisruptionbudgets"): WRITE,
    ("networking.k8s.io", "networkpolicies"): WRITE,
    ("monitoring.coreos.com", "servicemonitors"): WRITE,
    ("gateway.networking.k8s.io", "httproutes"): WRITE,
    ("", "pods"): {"get", "list", "watch"},
    # by name: credentials Secrets' metadata, endpoint key Secrets (never list or watch)
    ("", "secrets"): {"get", "create", "patch", "delete"},
    ("", "events"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
}
FORBIDDEN_RESOURCES = {
    "configmaps",
    "nodes",
    "customresourcedefinitions",
    "roles",
    "rolebindings",
    "clusterroles",
    "clusterrolebindings",
    "serviceaccounts",
}

# (verb, resource, extra kubectl args) the operator's ServiceAccount must be allowed ...
ALLOWED = [
    ("list", "modelservices.serving.conch.dev", ()),
    ("watch", "modelservices.serving.conch.dev", ()),
    ("watch", "modelversions.serving.conch.dev", ()),
    ("patch", "modelservices.serving.conch.dev", ("--subresource=status",)),
    ("patch", "modelversions.serving.conch.dev", ("--subresource=status",)),
    ("update", "modelservices.serving.conch.dev", ("--subresource=finalizers",)),
    ("create", "deployments.apps", ()),
    ("delete", "deployments.apps", ()),
    ("create", "services", ()),
    ("create", "horizontalpodautoscalers.autoscaling", ()),
    ("create", "poddisruptionbudgets.policy", ()),
    ("create", "networkpolicies.networking.k8s.io", ()),
    ("create", "servicemonitors.monitoring.coreos.com", ()),
    ("create", "httproutes.gateway.networking.k8s.io", ()),
    ("patch", "httproutes.gateway.networking.k8s.io", ()),
    ("list", "pods", ()),
    ("watch", "pods", ()),
    ("get", "secrets", ()),
    ("create", "secrets", ()),
    ("delete", "secrets", ()),
    ("create", "events", ()),
    ("create", "events.events.k8s.io", ()),
]
# ... and must be denied.
DENIED = [
    ("list", "secrets", ()),
    ("watch", "secrets", ()),
    ("list", "configmaps", ()),
    ("create", "pods", ()),
    ("delete", "pods", ()),
    ("delete", "nodes", ()),
    ("list", "nodes", ()),
    ("create", "clusterroles.rbac.authorization.k8s.io", ()),
    ("create", "rolebindings.rbac.authorization.k8s.io", ()),
    ("update", "customresourcedefinitions.apiextensions.k8s.io", ()),
    ("delete", "namespaces", ()),
    ("create", "serviceaccounts", ()),
    ("create", "modelservices.serving.conch.dev", ()),
    ("delete", "modelversions.serving.conch.dev", ()),
    ("impersonate", "serviceaccounts", ()),
]


# -- helpers ---------------------------------------------------------------------------


def only(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def main_rbac(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The operator's own (Cluster)Role or binding: not the catalog's (catalog-rbac.yaml)
    nor the tenants' aggregated ones (tenant-rbac.yaml)."""
    return only(
        [
            o
            for o in objects
            if "-catalog-" not in o["metadata"]["name"] and "-tenant-" not in o["metadata"]["name"]
        ],
        kind,
    )


TENANT_KINDS = ["modelservices", "modelversions", "modelaccessgrants"]


def test_tenant_roles_aggregate_into_edit_and_view(offline_helm: Helm) -> None:
    """A namespace's editors may write Conch's kinds (grants included) and its viewers read
    them; no status rights, nothing bound by the chart itself."""
    objects = offline_helm.render(namespace="ops")
    roles = {
        o["metadata"]["name"].rsplit("-", 1)[-1]: o
        for o in objects
        if o["kind"] == "ClusterRole" and "-tenant-" in o["metadata"]["name"]
    }
    assert set(roles) == {"edit", "view"}
    edit, view = roles["edit"], roles["view"]
    aggregate = "rbac.authorization.k8s.io/aggregate-to-"
    assert {k for k in edit["metadata"]["labels"] if k.startswith(aggregate)} == {
        aggregate + "edit",
        aggregate + "admin",
    }
    assert {k for k in view["metadata"]["labels"] if k.startswith(aggregate)} == {
        aggregate + "view"
    }
    assert [(r["resources"], set(r["verbs"])) for r in edit["rules"]] == [
        (TENANT_KINDS, WRITE | {"deletecollection"}),
        (["modelservices/scale"], {"get", "update", "patch"}),
    ]
    assert [(r["resources"], r["verbs"]) for r in view["rules"]] == [
        (TENANT_KINDS, ["get", "list", "watch"]),
        (["modelservices/scale"], ["get"]),
    ]
    bindings = [o for o in objects if o["kind"] in ("ClusterRoleBinding", "RoleBinding")]
    assert not [b for b in bindings if "-tenant-" in b["roleRef"]["name"]]
    off = offline_helm.render("--set=tenantRoles.aggregate=false", namespace="ops")
    assert not [o for o in off if "-tenant-" in o["metadata"]["name"]]


CATALOG_WRITER = [
    {
        "apiGroups": ["serving.conch.dev"],
        "resources": ["catalogentries"],
        "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
    }
]


def assert_catalog_rbac(objects: list[dict[str, Any]], account: str, readers: bool) -> None:
    """CatalogEntries are cluster-scoped: the operator writes them through a ClusterRole
    whatever watchNamespaces says; every authenticated user may read them (when enabled)."""
    roles = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ClusterRole"}
    bindings = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ClusterRoleBinding"}
    writer = next(r for n, r in roles.items() if n.endswith("-catalog-writer"))
    reader = next(r for n, r in roles.items() if n.endswith("-catalog-reader"))
    assert writer["rules"] == CATALOG_WRITER
    assert reader["rules"] == [{**CATALOG_WRITER[0], "verbs": ["get", "list", "watch"]}]
    writer_binding = bindings[writer["metadata"]["name"]]
    assert writer_binding["subjects"][0]["name"] == account
    reader_binding = bindings.get(reader["metadata"]["name"])
    if readers:
        assert reader_binding is not None
        assert reader_binding["subjects"] == [
            {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Group",
                "name": "system:authenticated",
            }
        ]
    else:
        assert reader_binding is None


def rule_table(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    """Flatten RBAC rules into (apiGroup, resource) -> verbs; each pair may appear once."""
    table: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                assert (group, resource) not in table, f"{group}/{resource} granted twice"
                table[group, resource] = set(rule["verbs"])
    return table


def assert_least_privilege(rules: list[dict[str, Any]]) -> None:
    assert rule_table(rules) == EXPECTED_RULES
    for rule in rules:
        for field in ("apiGroups", "resources", "verbs"):
            assert not any("*" in item for item in rule[field]), f"wildcard in {rule}"
        mentioned = {r.split("/")[0] for r in rule["resources"]}
        assert not mentioned & FORBIDDEN_RESOURCES, rule


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    containers = only(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def release_name() -> str:
    return f"op-{uuid.uuid4().hex[:6]}"  # without "conch", so the full name is RELEASE-conch


# -- fixtures --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def helm(toolchain: Toolchain, cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(toolchain.binary("helm"), tmp_path_factory.mktemp("helm"), cluster.kubeconfig)


@pytest.fixture(scope="module")
def offline_helm(toolchain: Toolchain, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """helm for lint and template: no cluster involved."""
    return Helm(toolchain.binary("helm"), tmp_path_factory.mktemp("helm-offline"))


@pytest.fixture
def make_namespace(api: client.ApiClient) -> Iterator[Callable[..., str]]:
    core = client.CoreV1Api(api)
    made: list[str] = []

    def make(labels: dict[str, str] | None = None) -> str:
        name = f"t-{uuid.uuid4().hex[:8]}"
        meta = client.V1ObjectMeta(name=name, labels=labels or {})
        core.create_namespace(client.V1Namespace(metadata=meta))
        made.append(name)
        return name

    yield make
    for name in made:
        core.delete_namespace(name)


def established(api: client.ApiClient, crd: str) -> bool:
    ext = client.ApiextensionsV1Api(api)
    conditions = ext.read_custom_resource_definition(crd).status.conditions or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


@pytest.fixture(scope="module")
def third_party_crds(
    toolchain: Toolchain, kubectl: Callable[..., str], api: client.ApiClient
) -> None:
    """HTTPRoute and ServiceMonitor CRDs, which the operator writes. `kubectl auth can-i`
    needs the server to serve a type to send its API group (for an unknown type it sends
    "httproutes.gateway.networking.k8s.io" as the resource name, with no group)."""
    assert toolchain.extra_crds, "the toolchain has no third-party CRDs"
    for path in toolchain.extra_crds:
        kubectl("apply", "--server-side", "-f", str(path))
    for crd in ("httproutes.gateway.networking.k8s.io", "servicemonitors.monitoring.coreos.com"):
        eventually(lambda crd=crd: established(api, crd), what=f"CRD {crd} Established")


@pytest.fixture
def can_i(toolchain: Toolchain, cluster: Cluster, third_party_crds: None) -> Callable[..., bool]:
    """`kubectl auth can-i` as a ServiceAccount: True for yes, False for no."""

    def ask(subject: str, verb: str, resource: str, *extra: str, namespace: str) -> bool:
        ns = ["--all-namespaces"] if namespace == "*" else [f"--namespace={namespace}"]
        result = subprocess.run(
            [
                toolchain.binary("kubectl"),
                f"--kubeconfig={cluster.kubeconfig}",
                "auth",
                "can-i",
                verb,
                resource,
                *extra,
                *ns,
                f"--as={subject}",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        answer = result.stdout.strip()
        assert "doesn't have a resource type" not in result.stderr, result.stderr
        assert answer in {"yes", "no"}, f"can-i {verb} {resource}: {answer} {result.stderr}"
        assert result.returncode == (0 if answer == "yes" else 1)
        return answer == "yes"

    return ask


def installed(helm: Helm, release: str, namespace: str, *values: str) -> str:
    out = helm.ok(
        "install",
        release,
        str(CHART),
        f"--namespace={namespace}",
        "--wait",
        "--timeout=180s",
        *values,
    )
    return out


def uninstall(helm: Helm, release: str, namespace: str) -> None:
    helm.run("uninstall", release, f"--namespace={namespace}", "--wait", "--timeout=120s")


def wait_available(api: client.ApiClient, name: str, namespace: str) -> client.V1Deployment:
    apps = client.AppsV1Api(api)

    def available() -> client.V1Deployment | None:
        dep = apps.read_namespaced_deployment(name, namespace)
        conditions = {c.type: c.status for c in dep.status.conditions or []}
        ok = (
            conditions.get("Available") == "True"
            and dep.status.available_replicas == dep.spec.replicas
        )
        return dep if ok else None

    return eventually(available, timeout=120, what=f"deployment {namespace}/{name} Available")


def gone(read: Callable[[], object]) -> bool:
    try:
        read()
    except ApiException as e:
        return e.status == 404
    return False


# -- lint and schema ---------------------------------------------------------------------


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("values", [(), ("--set=watchNamespaces={team-a,team-b}",)])
def test_lint_passes(offline_helm: Helm, strict: bool, values: tuple[str, ...]) -> None:
    out = offline_helm.ok("lint", str(CHART), *(["--strict"] if strict else []), *values)
    assert "0 chart(s) failed" in out
    assert "[ERROR]" not in out and "[WARNING]" not in out


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("replicaCount=9", "maximum: got 9, want 5"),
        ("replicaKount=2", "additional properties 'replicaKount' not allowed"),
        ("watchNamespaces=notalist", "at '/watchNamespaces': got string, want array"),
        (
            "watchNamespaces={Not_A_Namespace}",
            "at '/watchNamespaces/0': 'Not_A_Namespace' does not match pattern",
        ),
        ("watchNamespaces={a,a}", "at '/watchNamespaces': items at 0 and 1 are equal"),
        ("verbose=yes", "at '/verbose': got string, want boolean"),
        ("image.pullPolicy=Sometimes", "at '/image/pullPolicy': value must be one of"),
        ("image.registry=elsewhere", "additional properties 'registry' not allowed"),
        (
            "metrics.serviceMonitor.interval=often",
            "at '/metrics/serviceMonitor/interval': 'often' does not match",
        ),
        ("serviceAccount.create=maybe", "at '/serviceAccount/create': got string, want boolean"),
        (
            "policy.requireImageDigest=yes",
            "at '/policy/requireImageDigest': got string, want boolean",
        ),
        (
            "policy.allowedTritonFlags={-v}",
            "at '/policy/allowedTritonFlags/0': '-v' does not match",
        ),
        (
            "policy.allowedNodeSelectorKeys={Example.com/pool}",
            "at '/policy/allowedNodeSelectorKeys/0': 'Example.com/pool' does not match",
        ),
        ("policy.allowEverything=true", "additional properties 'allowEverything' not allowed"),
        ("sandbox.apiServer=10.0.0.1:6443", "at '/sandbox/apiServer': '10.0.0.1:6443' does not"),
    ],
)
def test_schema_rejects_invalid_values(offline_helm: Helm, setting: str, message: str) -> None:
    for command in (
        ["lint", str(CHART)],
        ["template", "conch", str(CHART), f"--kube-version={KUBE_VERSION}"],
    ):
        result = offline_helm.run(*command, f"--set={setting}")
        assert result.returncode != 0, f"helm {command[0]} accepted {setting}"
        output = result.stdout + result.stderr
        assert "don't meet the specifications of the schema" in output, output
        assert message in output, output


def test_chart_rejects_old_kubernetes(offline_helm: Helm) -> None:
    result = offline_helm.run("template", "conch", str(CHART), "--kube-version=1.29.9")
    assert result.returncode != 0
    assert "kubeVersion: >=1.30.0-0" in result.stderr


# -- rendered objects ---------------------------------------------------------------------


def test_chart_crds_equal_the_generated_crds() -> None:
    top = {p.name: p.read_bytes() for p in sorted((ROOT / "crds").glob("*.yaml"))}
    chart = {p.name: p.read_bytes() for p in sorted((CHART / "crds").glob("*.yaml"))}
    assert top, "no CRDs in crds/"
    assert sorted(chart) == sorted(top), "charts/conch/crds/ has different files than crds/"
    stale = [name for name in top if chart[name] != top[name]]
    assert not stale, f"charts/conch/crds/ is stale ({stale}): cp crds/*.yaml charts/conch/crds/"


def test_all_namespaces_mode_renders_a_least_privilege_cluster_role(offline_helm: Helm) -> None:
    objects = offline_helm.render(namespace="ops")
    assert sorted(o["kind"] for o in objects) == [
        *["ClusterRole"] * 5,  # the operator's, the catalog writer and reader, tenant edit/view
        *["ClusterRoleBinding"] * 3,
        "ConfigMap",  # the Grafana dashboard
        "Deployment",
        "PodDisruptionBudget",
        "Role",  # the leader Lease, in the release namespace
        "RoleBinding",
        "Service",
        "ServiceAccount",
        "ValidatingAdmissionPolicy",  # an in-use ModelVersion cannot be deleted
        "ValidatingAdmissionPolicyBinding",
    ]
    assert_least_privilege(main_rbac(objects, "ClusterRole")["rules"])
    assert only(objects, "Role")["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "create", "update"],
        }
    ]
    binding = main_rbac(objects, "ClusterRoleBinding")
    account = only(objects, "ServiceAccount")["metadata"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": main_rbac(objects, "ClusterRole")["metadata"]["name"],
    }
    assert_catalog_rbac(objects, account["name"], readers=True)
    quiet = offline_helm.render("--set=catalog.readableByAllUsers=false", namespace="ops")
    assert_catalog_rbac(quiet, account["name"], readers=False)
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["name"], "namespace": "ops"}
    ]
    args = container(objects)["args"]
    assert "--all-namespaces" in args
    assert not [a for a in args if a.startswith("--namespace")]


def test_namespaced_mode_renders_a_role_in_each_watched_namespace(offline_helm: Helm) -> None:
    objects = offline_helm.render("--set=watchNamespaces={team-a,team-b}", namespace="ops")
    cluster_wide = [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    assert all(  # catalog and the tenants' aggregated roles only
        "-catalog-" in o["metadata"]["name"] or "-tenant-" in o["metadata"]["name"]
        for o in cluster_wide
    )
    assert_catalog_rbac(objects, only(objects, "ServiceAccount")["metadata"]["name"], True)
    leader = "leader-election"
    roles = {
        o["metadata"]["namespace"]: o
        for o in objects
        if o["kind"] == "Role" and not o["metadata"]["name"].endswith(leader)
    }
    bindings = {
        o["metadata"]["namespace"]: o
        for o in objects
        if o["kind"] == "RoleBinding" and not o["metadata"]["name"].endswith(leader)
    }
    assert sorted(roles) == sorted(bindings) == ["team-a", "team-b"]
    account = only(objects, "ServiceAccount")["metadata"]
    for ns, role in roles.items():
        assert_least_privilege(role["rules"])
        assert bindings[ns]["roleRef"]["kind"] == "Role"
        assert bindings[ns]["roleRef"]["name"] == role["metadata"]["name"]
        assert bindings[ns]["subjects"] == [
            {"kind": "ServiceAccount", "name": account["name"], "namespace": "ops"}
        ]
    args = container(objects)["args"]
    assert [a for a in args if a.startswith("--namespace")] == [
        "--namespace=team-a",
        "--namespace=team-b",
    ]
    assert "--all-namespaces" not in args


def test_deployment_is_two_leader_electing_restricted_replicas(offline_helm: Helm) -> None:
    single = only(offline_helm.render("--set=leaderElection.enabled=false"), "Deployment")
    assert single["spec"]["replicas"] == 1
    assert single["spec"]["strategy"] == {"type": "Recreate"}
    assert "--leader-elect" not in container([single])["args"]
    objects = offline_helm.render()
    deployment = only(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert "--leader-elect" in container(objects)["args"]
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container(objects)["env"]}
    assert env == {"POD_NAMESPACE": "metadata.namespace", "POD_NAME": "metadata.name"}
    pod = deployment["spec"]["template"]["spec"]
    assert "hostNetwork" not in pod  # the dev sandbox's value only
    assert pod["automountServiceAccountToken"] is True
    assert pod["serviceAccountName"] == only(objects, "ServiceAccount")["metadata"]["name"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    c = container(objects)
    assert c["securityContext"] == {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert c["image"] == "conch-operator:0.1.0"
    assert [a for a in c["args"] if not a.startswith(POLICY_FLAGS)] == [
        "--all-namespaces",
        "--metrics-bind-address=0.0.0.0:8080",
        "--health-bind-address=0.0.0.0:8081",
        "--runtime-image=ghcr.io/conch-serving/conch-runtime:0.1.0",
        "--leader-elect",
    ]
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"metrics": 8080, "health": 8081}
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["resources"]["requests"] == {"cpu": "100m", "memory": "256Mi"}
    assert "memory" in c["resources"]["limits"]
    assert c["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {}}]


def test_sandbox_host_network_keeps_to_loopback(offline_helm: Helm) -> None:
    """The dev sandbox's value (conch.dev.incluster): the node's network, the API server on
    its loopback address, the operator's listeners and kubelet's probes on loopback, one
    replica; refused without the API server's address or with leader election."""
    values = sandbox_values("conch.dev/sandbox/op:1", 6443, 30080, 30081)
    flags = [f"--set-json={key}={json.dumps(value)}" for key, value in values.items()]
    objects = offline_helm.render(*flags)
    deployment = only(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert deployment["spec"]["replicas"] == 1
    c = container(objects)
    assert (c["image"], c["imagePullPolicy"]) == ("conch.dev/sandbox/op:1", "Never")
    assert "--metrics-bind-address=127.0.0.1:30080" in c["args"]
    assert "--health-bind-address=127.0.0.1:30081" in c["args"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert (env["KUBERNETES_SERVICE_HOST"], env["KUBERNETES_SERVICE_PORT"]) == ("127.0.0.1", "6443")
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {
        "metrics": 30080,
        "health": 30081,
    }
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"host": "127.0.0.1", "path": "/healthz", "port": "health"}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True  # otherwise still restricted

    for missing, message in (
        ("--set=sandbox.apiServer=", "sandbox.hostNetwork needs sandbox.apiServer"),
        ("--set=leaderElection.enabled=true", "set leaderElection.enabled=false"),
    ):
        result = offline_helm.run(
            "template", "conch", str(CHART), f"--kube-version={KUBE_VERSION}", *flags, missing
        )
        assert result.returncode != 0 and message in result.stderr, result.stderr


def test_values_reach_the_pod(offline_helm: Helm) -> None:
    objects = offline_helm.render(
        "--set=image.repository=registry.example/conch",
        "--set=image.tag=v9",
        "--set=image.pullPolicy=Always",
        "--set=imagePullSecrets[0].name=pull",
        "--set=nodeSelector.pool=system",
        "--set=priorityClassName=system-cluster-critical",
        "--set=tolerations[0].key=dedicated",
        "--set=tolerations[0].operator=Exists",
        "--set=podAnnotations.team=ml",
        "--set=verbose=true",
        "--set=serviceAccount.create=false",
        "--set=serviceAccount.name=existing",
        "--set=metrics.service.enabled=false",
    )
    kinds = [o["kind"] for o in objects]
    assert "ServiceAccount" not in kinds and "Service" not in kinds
    template = only(objects, "Deployment")["spec"]["template"]
    pod = template["spec"]
    assert template["metadata"]["annotations"] == {"team": "ml"}
    assert pod["serviceAccountName"] == "existing"
    assert pod["imagePullSecrets"] == [{"name": "pull"}]
    assert pod["nodeSelector"] == {"pool": "system"}
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    c = container(objects)
    assert (c["image"], c["imagePullPolicy"]) == ("registry.example/conch:v9", "Always")
    assert c["args"][-1] == "--verbose"
    assert main_rbac(objects, "ClusterRoleBinding")["subjects"][0]["name"] == "existing"


def operator_policy(objects: list[dict[str, Any]]) -> PodPolicy:
    """The PodPolicy the operator builds from the rendered container's arguments."""
    parser = argparse.ArgumentParser(exit_on_error=False)
    operator_main.add_arguments(parser)
    return operator_main.pod_policy(parser.parse_args(container(objects)["args"]))


def test_policy_defaults_are_the_operator_defaults(offline_helm: Helm) -> None:
    assert operator_policy(offline_helm.render()) == PodPolicy()


def test_policy_values_reach_the_operator(offline_helm: Helm, tmp_path: Path) -> None:
    digest = "sha256:" + "ab" * 32
    policy = {
        "allowedTritonImages": ["registry.example/ml/", f"nvcr.io/nvidia/tritonserver@{digest}"],
        "requireImageDigest": True,
        "allowedPriorityClasses": ["serving"],
        "allowedTolerationKeys": [],  # none at all, not the default
        "allowedNodeSelectorKeys": ["*"],
        "allowedTritonFlags": ["--log-file", "log-verbose"],
    }
    values = tmp_path / "policy.yaml"
    values.write_text(yaml.safe_dump({"policy": policy}))
    objects = offline_helm.render(f"--values={values}")
    assert operator_policy(objects) == PodPolicy(
        allowed_triton_images=("registry.example/ml/", f"nvcr.io/nvidia/tritonserver@{digest}"),
        require_image_digest=True,
        allowed_priority_classes=("serving",),
        allowed_toleration_keys=(),
        allowed_node_selector_keys=("*",),
        allowed_triton_flags=("--log-file", "--log-verbose"),
    )


def test_artifact_values_reach_the_operator(offline_helm: Helm, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    operator_main.add_arguments(parser)
    default = operator_main.artifact_access(
        parser.parse_args(container(offline_helm.render())["args"])
    )
    assert default == ArtifactAccess()  # no hosts, no endpoint, never file://
    values = tmp_path / "artifacts.yaml"
    artifacts = {
        "credentialsHosts": ["models", "*.models.example"],
        "s3Endpoint": "https://s3.example",
    }
    values.write_text(yaml.safe_dump({"artifacts": artifacts}))
    args = container(offline_helm.render(f"--values={values}"))["args"]
    assert operator_main.artifact_access(parser.parse_args(args)) == ArtifactAccess(
        credentials_hosts=("models", "*.models.example"), s3_endpoint="https://s3.example"
    )


def rendered_args(objects: list[dict[str, Any]]) -> argparse.Namespace:
    """The rendered container's arguments as the operator's own parser reads them."""
    parser = argparse.ArgumentParser(exit_on_error=False)
    operator_main.add_arguments(parser)
    return parser.parse_args(container(objects)["args"])


def test_metrics_source_values_reach_the_operator(offline_helm: Helm, tmp_path: Path) -> None:
    assert operator_main.metrics_source(rendered_args(offline_helm.render())) is None
    source = {
        "url": "https://mimir.example/prometheus",
        "bearerTokenSecret": {"name": "metrics-reader", "key": "bearer"},
        "caBundle": {"configMap": "corp-ca", "key": "bundle.pem"},
        "headers": {"X-Scope-OrgID": "team-a", "X-Extra": "a=b c"},
        "timeoutSeconds": 2.5,
    }
    values = tmp_path / "source.yaml"
    values.write_text(yaml.safe_dump({"metrics": {"source": source}}))
    objects = offline_helm.render(f"--values={values}")
    token_dir, ca_dir = "/var/run/secrets/conch/prometheus-token", "/etc/conch/prometheus-ca"
    assert operator_main.metrics_source(rendered_args(objects)) == Source(
        url="https://mimir.example/prometheus",
        bearer_token_file=Path(token_dir, "token"),
        ca_file=Path(ca_dir, "ca.crt"),
        headers={"X-Scope-OrgID": "team-a", "X-Extra": "a=b c"},
        timeout=2.5,
    )
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    mounts = {m["name"]: m for m in container(objects)["volumeMounts"]}
    assert mounts["prometheus-token"] == {
        "name": "prometheus-token",
        "mountPath": token_dir,
        "readOnly": True,
    }
    assert mounts["prometheus-ca"]["mountPath"] == ca_dir
    assert not any("subPath" in m for m in mounts.values())  # subPath mounts never rotate
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["prometheus-token"]["secret"] == {
        "secretName": "metrics-reader",
        "items": [{"key": "bearer", "path": "token"}],
    }
    assert volumes["prometheus-ca"]["configMap"] == {
        "name": "corp-ca",
        "items": [{"key": "bundle.pem", "path": "ca.crt"}],
    }

    in_secret = offline_helm.render(
        "--set=metrics.source.url=https://p.example", "--set=metrics.source.caBundle.secret=ca"
    )
    ca = {
        v["name"]: v for v in only(in_secret, "Deployment")["spec"]["template"]["spec"]["volumes"]
    }
    assert ca["prometheus-ca"]["secret"] == {
        "secretName": "ca",
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
    }


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            [
                "metrics.source.url=https://p",
                "metrics.source.caBundle.configMap=a",
                "metrics.source.caBundle.secret=b",
            ],
            "set configMap or secret, not both",
        ),
        (["metrics.source.bearerTokenSecret.name=t"], "need metrics.source.url"),
        (["metrics.source.url=ftp://p"], "at '/metrics/source/url'"),
        (["metrics.source.headers.Bad Name=x"], "invalid propertyName 'Bad Name'"),
        (["metrics.source.timeoutSeconds=0"], "at '/metrics/source/timeoutSeconds'"),
        (["image.digest=latest"], "at '/image/digest'"),
        (["extraArgs={-v}"], "at '/extraArgs/0'"),
    ],
)
def test_bad_metrics_source_values_are_refused(
    offline_helm: Helm, settings: list[str], message: str
) -> None:
    result = offline_helm.run(
        "template",
        "conch",
        str(CHART),
        f"--kube-version={KUBE_VERSION}",
        *(f"--set={s}" for s in settings),
    )
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_image_digest_and_extra_args(offline_helm: Helm) -> None:
    digest = "sha256:" + "cd" * 32
    objects = offline_helm.render(
        "--set=image.repository=registry.example/conch",
        "--set=image.tag=ignored",
        f"--set=image.digest={digest}",
        "--set=extraArgs={--workers=32,--verbose}",
    )
    c = container(objects)
    assert c["image"] == f"registry.example/conch@{digest}"
    assert c["args"][-2:] == ["--workers=32", "--verbose"]
    assert rendered_args(objects).workers == 32


def serving_settings(objects: list[dict[str, Any]]) -> PodSettings:
    """The PodSettings `conch operator run` builds from the rendered arguments."""
    parser = argparse.ArgumentParser(exit_on_error=False)
    operator_main.add_arguments(parser)
    if not any(a.dest == "shm_size" for a in parser._actions):  # until run() wires them
        podflags.add_arguments(parser)
    args = parser.parse_args(container(objects)["args"])
    return podflags.pod_settings(
        args,
        args.runtime_image,
        operator_main.pod_policy(args),
        operator_main.artifact_access(args),
    )


def test_serving_pod_values_reach_the_operator(offline_helm: Helm, tmp_path: Path) -> None:
    assert serving_settings(offline_helm.render()) == PodSettings()
    serving = {
        "serviceAccountName": "model-reader",
        "imagePullSecrets": ["registry-a"],
        "env": {"AWS_REGION": "eu-west-1", "HTTPS_PROXY": "http://proxy:3128"},
        "labels": {"team": "ml", "example.com/cost": ""},
        "annotations": {"example.com/note": "a=b, c"},
        "shmSize": "4Gi",
        "modelVolumeFactor": 2.5,
        "ephemeralStorageRequest": True,
        "topologySpread": False,
        "metricsScrapeNamespaces": ["monitoring", "thanos"],
    }
    values = tmp_path / "serving.yaml"
    values.write_text(yaml.safe_dump({"servingPods": serving}))
    assert serving_settings(offline_helm.render(f"--values={values}")) == PodSettings(
        service_account="model-reader",
        image_pull_secrets=("registry-a",),
        env={"AWS_REGION": "eu-west-1", "HTTPS_PROXY": "http://proxy:3128"},
        labels={"team": "ml", "example.com/cost": ""},
        annotations={"example.com/note": "a=b, c"},
        shm_size="4Gi",
        model_volume_factor=2.5,
        ephemeral_storage_request=True,
        topology_spread=False,
        metrics_scrape_namespaces=("monitoring", "thanos"),
    )
    for bad, where in [
        (
            "servingPods.metricsScrapeNamespaces={Not_A_Namespace}",
            "/servingPods/metricsScrapeNamespaces/0",
        ),
        ("servingPods.shmSize=lots", "/servingPods/shmSize"),
        ("servingPods.labels.team=no spaces", "/servingPods/labels"),
        ("servingPods.imagePullSecrets={Bad_Name}", "/servingPods/imagePullSecrets/0"),
        ("servingPods.modelVolumeFactor=-1", "/servingPods/modelVolumeFactor"),
    ]:
        result = offline_helm.run(
            "template", "conch", str(CHART), f"--kube-version={KUBE_VERSION}", f"--set={bad}"
        )
        assert result.returncode != 0 and where in result.stderr, (bad, result.stderr)


def test_metrics_service_and_service_monitor(offline_helm: Helm) -> None:
    objects = offline_helm.render()
    service = only(objects, "Service")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}
    ]
    pod_labels = only(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert "ServiceMonitor" not in [o["kind"] for o in objects]

    # enabled, but the cluster does not serve the API: nothing rendered
    enabled = "--set=metrics.serviceMonitor.enabled=true"
    assert "ServiceMonitor" not in [o["kind"] for o in offline_helm.render(enabled)]

    objects = offline_helm.render(
        enabled,
        f"--api-versions={SERVICE_MONITOR_API}",
        "--set=metrics.serviceMonitor.labels.release=prom",
        "--set=metrics.serviceMonitor.interval=15s",
    )
    monitor = only(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= (
        only(objects, "Service")["metadata"]["labels"].items()
    )
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["conch-system"]}
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"}
    ]

    result = offline_helm.run(
        "template",
        "conch",
        str(CHART),
        f"--kube-version={KUBE_VERSION}",
        enabled,
        f"--api-versions={SERVICE_MONITOR_API}",
        "--set=metrics.service.enabled=false",
    )
    assert result.returncode != 0
    assert "metrics.serviceMonitor.enabled needs metrics.service.enabled" in result.stderr


def test_operator_pdb_allows_a_drain(offline_helm: Helm) -> None:
    objects = offline_helm.render()
    pdb = only(objects, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1  # one replica: never blocks a drain
    pod_labels = only(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    off = offline_helm.render("--set=podDisruptionBudget.enabled=false")
    assert "PodDisruptionBudget" not in [o["kind"] for o in off]


def hook_objects(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    hooks = [o for o in objects if o["metadata"].get("annotations", {}).get("helm.sh/hook")]
    return {o["kind"]: o for o in hooks}


@pytest.mark.parametrize(
    ("values", "namespace"),
    [
        ((), "conch-system"),
        (("--set=watchNamespaces={conch-system,team-a}",), "conch-system"),
        (("--set=watchNamespaces={team-a,team-b}",), "team-a"),
    ],
)
def test_helm_test_hook_runs_selftest_with_least_privilege(
    offline_helm: Helm, values: tuple[str, ...], namespace: str
) -> None:
    hooks = hook_objects(offline_helm.render(*values, tests=True))
    assert sorted(hooks) == ["Pod", "Role", "RoleBinding", "ServiceAccount"]
    for obj in hooks.values():
        annotations = obj["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "test"
        assert "hook-succeeded" in annotations["helm.sh/hook-delete-policy"]
        assert obj["metadata"]["namespace"] == namespace
    assert hooks["Role"]["rules"] == [
        {
            "apiGroups": ["serving.conch.dev"],
            "resources": ["modelservices", "modelversions"],
            "verbs": ["get", "create", "delete"],
        }
    ]
    pod = hooks["Pod"]["spec"]
    assert pod["serviceAccountName"] == hooks["ServiceAccount"]["metadata"]["name"]
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    (c,) = pod["containers"]
    assert c["image"] == "conch-operator:0.1.0"
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["command"] == ["conch"]
    args = cli.parser().parse_args(c["args"])  # the operator's own command line accepts it
    assert args.func.__name__ == "_operator_selftest"
    assert (args.namespace, args.timeout) == (namespace, 120)
    assert "Pod" not in [o["kind"] for o in offline_helm.render(*values)]
    disabled = offline_helm.render("--set=test.enabled=false", tests=True)
    assert not hook_objects(disabled)


def test_chart_metadata_for_artifact_hub() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    annotations = chart["annotations"]
    crds = yaml.safe_load(annotations["artifacthub.io/crds"])
    shipped = {
        yaml.safe_load(p.read_text())["metadata"]["name"] for p in (CHART / "crds").glob("*.yaml")
    }
    assert {c["name"] for c in crds} == shipped
    examples = yaml.safe_load(annotations["artifacthub.io/crdsExamples"])
    models = {"ModelService": ModelService, "ModelVersion": ModelVersion}
    for example in examples:  # each example is a valid object of its kind
        models[example["kind"]].model_validate(example)
    assert annotations["artifacthub.io/operator"] == "true"
    assert annotations["artifacthub.io/license"] == "Apache-2.0"
    images = yaml.safe_load(annotations["artifacthub.io/images"])
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert {i["image"] for i in images} == {
        f"{values['image']['repository']}:{chart['appVersion']}",
        values["runtimeImage"],
    }


def test_every_object_carries_the_standard_labels(offline_helm: Helm) -> None:
    for obj in offline_helm.render("--set=watchNamespaces={team-a}"):
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "conch", obj["kind"]
        assert labels["app.kubernetes.io/instance"] == "conch"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/version"] == "0.1.0"
        assert labels["helm.sh/chart"] == "conch-0.1.0"


# -- on the control plane ------------------------------------------------------------------


def test_install_becomes_available_and_uninstall_cleans_up(
    helm: Helm, api: client.ApiClient, namespace: str
) -> None:
    release = release_name()
    fullname = f"{release}-conch"
    try:
        notes = installed(helm, release, namespace)
        assert "kubectl get mv,msvc" in notes
        assert f"ServiceAccount/{fullname}" in notes

        deployment = wait_available(api, fullname, namespace)
        assert deployment.spec.template.spec.service_account_name == fullname
        pods = client.CoreV1Api(api).list_namespaced_pod(
            namespace, label_selector=f"app.kubernetes.io/instance={release}"
        )
        assert len(pods.items) == 2  # two replicas electing a leader

        for crd in ("modelservices.serving.conch.dev", "modelversions.serving.conch.dev"):
            eventually(lambda crd=crd: established(api, crd), what=f"CRD {crd} Established")

        status = helm.ok("status", release, f"--namespace={namespace}", "-o", "yaml")
        assert yaml.safe_load(status)["info"]["status"] == "deployed"
    finally:
        uninstall(helm, release, namespace)

    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    rbac = client.RbacAuthorizationV1Api(api)
    for what, read in {
        "Deployment": lambda: apps.read_namespaced_deployment(fullname, namespace),
        "ServiceAccount": lambda: core.read_namespaced_service_account(fullname, namespace),
        "Service": lambda: core.read_namespaced_service(f"{fullname}-metrics", namespace),
        "ClusterRole": lambda: rbac.read_cluster_role(fullname),
        "ClusterRoleBinding": lambda: rbac.read_cluster_role_binding(fullname),
    }.items():
        eventually(lambda read=read: gone(read), timeout=60, what=f"{what} deleted")
    # Helm never deletes CRDs (that would delete every user's ModelServices with them).
    ext = client.ApiextensionsV1Api(api)
    assert ext.read_custom_resource_definition("modelservices.serving.conch.dev")


def test_install_is_admitted_in_a_restricted_namespace(
    helm: Helm, api: client.ApiClient, make_namespace: Callable[..., str]
) -> None:
    levels = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn")}
    namespace = make_namespace({**levels, "pod-security.kubernetes.io/enforce-version": "latest"})
    core = client.CoreV1Api(api)

    # PodSecurity admission is really enforcing here: a plain pod is refused.
    plain = client.V1Pod(
        metadata=client.V1ObjectMeta(name="plain"),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]),
    )
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(namespace, plain, dry_run="All")
    assert refused.value.status == 403
    assert "violates PodSecurity" in refused.value.body

    release = release_name()
    try:
        result = helm.run(
            "install", release, str(CHART), f"--namespace={namespace}", "--wait", "--timeout=180s"
        )
        assert result.returncode == 0, result.stderr
        assert "PodSecurity" not in result.stderr, result.stderr
        wait_available(api, f"{release}-conch", namespace)
        pods = core.list_namespaced_pod(
            namespace, label_selector=f"app.kubernetes.io/instance={release}"
        ).items
        assert len(pods) == 2  # two replicas electing a leader
        for pod in pods:
            ready = {c.type: c.status for c in pod.status.conditions or []}
            assert ready.get("Ready") == "True"
    finally:
        uninstall(helm, release, namespace)


def test_service_account_can_do_its_job_and_nothing_more(
    helm: Helm,
    can_i: Callable[..., bool],
    namespace: str,
    make_namespace: Callable[..., str],
) -> None:
    release = release_name()
    subject = f"system:serviceaccount:{namespace}:{release}-conch"
    elsewhere = make_namespace()
    try:
        installed(helm, release, namespace)
        eventually(lambda: can_i(subject, "list", "pods", namespace=elsewhere), what="RBAC")
        for ns in (elsewhere, namespace, "*"):
            for verb, resource, extra in ALLOWED:
                assert can_i(subject, verb, resource, *extra, namespace=ns), (verb, resource, ns)
            for verb, resource, extra in DENIED:
                assert not can_i(subject, verb, resource, *extra, namespace=ns), (verb, resource)
    finally:
        uninstall(helm, release, namespace)
    # the ClusterRoleBinding is gone with the release
    eventually(
        lambda: not can_i(subject, "list", "modelservices.serving.conch.dev", namespace=elsewhere),
        what="permissions revoked by uninstall",
    )


def test_tenants_may_scale_modelservices_through_the_aggregated_roles(
    helm: Helm,
    api: client.ApiClient,
    can_i: Callable[..., bool],
    namespace: str,
    make_namespace: Callable[..., str],
) -> None:
    """A namespace's editors may `kubectl scale` a ModelService (and write an HPA that
    scales it); its viewers may read the scale, not change it; elsewhere, nothing."""
    release, team, elsewhere = release_name(), make_namespace(), make_namespace()
    rbac = client.RbacAuthorizationV1Api(api)
    for user, role in (("erin", "edit"), ("vic", "view")):
        rbac.create_namespaced_role_binding(
            team,
            {
                "metadata": {"name": user},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": role,
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}
                ],
            },
        )
    scale = ("modelservices.serving.conch.dev", "--subresource=scale")
    try:
        installed(helm, release, namespace)
        eventually(lambda: can_i("erin", "patch", *scale, namespace=team), what="aggregation")
        for verb in ("get", "update", "patch"):
            assert can_i("erin", verb, *scale, namespace=team), verb
            assert not can_i("erin", verb, *scale, namespace=elsewhere), verb
        assert can_i("vic", "get", *scale, namespace=team)
        assert not can_i("vic", "patch", *scale, namespace=team)
        assert not can_i("vic", "update", *scale, namespace=team)
    finally:
        uninstall(helm, release, namespace)


def test_namespaced_mode_grants_only_the_watched_namespaces(
    helm: Helm,
    api: client.ApiClient,
    can_i: Callable[..., bool],
    namespace: str,
    make_namespace: Callable[..., str],
) -> None:
    watched = [make_namespace(), make_namespace()]
    unwatched = make_namespace()
    release = release_name()
    fullname = f"{release}-conch"
    subject = f"system:serviceaccount:{namespace}:{fullname}"
    rbac = client.RbacAuthorizationV1Api(api)
    try:
        installed(helm, release, namespace, f"--set=watchNamespaces={{{','.join(watched)}}}")
        deployment = wait_available(api, fullname, namespace)
        assert deployment.spec.template.spec.containers[0].args[:2] == [
            f"--namespace={ns}" for ns in watched
        ]
        assert gone(lambda: rbac.read_cluster_role(fullname))
        assert gone(lambda: rbac.read_cluster_role_binding(fullname))

        for ns in watched:
            role = api.sanitize_for_serialization(rbac.read_namespaced_role(fullname, ns))
            assert_least_privilege(role["rules"])
            eventually(lambda ns=ns: can_i(subject, "list", "pods", namespace=ns), what="RBAC")
            for verb, resource, extra in ALLOWED:
                assert can_i(subject, verb, resource, *extra, namespace=ns), (verb, resource, ns)
            for verb, resource, extra in DENIED:
                assert not can_i(subject, verb, resource, *extra, namespace=ns), (verb, resource)
        for ns in (unwatched, namespace, "*"):
            for verb, resource, extra in ALLOWED:
                assert not can_i(subject, verb, resource, *extra, namespace=ns), (verb, resource)
    finally:
        uninstall(helm, release, namespace)
    for ns in watched:
        eventually(
            lambda ns=ns: gone(lambda: rbac.read_namespaced_role(fullname, ns)),
            what=f"Role in {ns} deleted",
        )
        assert gone(lambda ns=ns: rbac.read_namespaced_role_binding(fullname, ns))


def token_kubeconfig(
    api: client.ApiClient, cluster: Cluster, account: str, namespace: str, directory: Path
) -> Path:
    """A kubeconfig holding only a ServiceAccount's token: its rights, nothing more."""
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
    )
    token = (
        client.CoreV1Api(api)
        .create_namespaced_service_account_token(account, namespace, request)
        .status.token
    )
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["users"] = [{"name": account, "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = account
    path = directory / f"{account}.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def test_operator_reconciles_with_the_chart_service_account(
    helm: Helm,
    api: client.ApiClient,
    cluster: Cluster,
    operator: OperatorProcess,
    make_namespace: Callable[..., str],
    tmp_path: Path,
) -> None:
    """RBAC is sufficient: the operator, holding only the chart's ServiceAccount token,
    takes an example to Ready without an RBAC refusal."""
    release, system = release_name(), make_namespace()
    fullname = f"{release}-conch"
    installed(helm, release, system)
    try:
        kubeconfig = token_kubeconfig(api, cluster, fullname, system, tmp_path)
        operator.stop()
        as_chart = OperatorProcess(kubeconfig, tmp_path / "operator.log").start()
        try:
            workload = make_namespace()
            create_version(api, workload)
            create_service(api, workload)
            wait_for(api, workload, "Ready", "True", timeout=120)
            # RBAC refusals name the user; a namespace an earlier test left terminating
            # refuses writes with 403 too, which is not the chart's doing
            assert "forbidden: User" not in (tmp_path / "operator.log").read_text()
            assert "conch_reconcile_api_requests_count" in as_chart.metrics()
        finally:
            as_chart.stop()
            operator.start()
    finally:
        uninstall(helm, release, system)


def test_installed_chart_completes_an_analysed_canary(
    helm: Helm,
    api: client.ApiClient,
    cluster: Cluster,
    operator: OperatorProcess,
    prometheus: PrometheusProcess,
    make_namespace: Callable[..., str],
    tmp_path: Path,
) -> None:
    """The chart as installed: the operator runs with its Deployment's own flags (the
    documented metrics.source values pointing at a real Prometheus) and its ServiceAccount's
    token, and promotes a canary on analyses of real Tritons' metrics."""
    release, system = release_name(), make_namespace()
    fullname = f"{release}-conch"
    installed(helm, release, system, f"--set=metrics.source.url={prometheus.url}")
    (container,) = (
        client.AppsV1Api(api)
        .read_namespaced_deployment(fullname, system)
        .spec.template.spec.containers
    )
    local = ("--metrics-bind-address=", "--health-bind-address=")  # OperatorProcess binds loopback
    flags = [a for a in container.args if not a.startswith(local)]
    assert f"--prometheus-url={prometheus.url}" in flags
    kubeconfig = token_kubeconfig(api, cluster, fullname, system, tmp_path)
    workload = make_namespace()
    backends = Backends(prometheus, workload, "digits")
    operator.stop()
    pod = {"POD_NAMESPACE": system, "POD_NAME": f"{fullname}-0"}  # --leader-elect's downward API
    as_chart = OperatorProcess(kubeconfig, tmp_path / "operator.log", *flags, env=pod)
    try:
        as_chart.start()
        create_version(api, workload, "digits-v1")
        create_version(api, workload, "digits-v2")
        create_service(
            api, workload, autoscaling=None, replicas=2, resources={"gpus": 1}, rollout=FAST_ROLLOUT
        )
        eventually(lambda: phase(api, workload).get("phase") == "Stable", 90, what="Stable")
        backends.start("digits-v1")
        backends.start("digits-v2")
        with traffic(api, workload, backends):
            start_rollout(api, workload, "digits-v2")
            done = promoted(api, workload, what="the canary promoted on analysis")
        assert done["rolloutHistory"][-1]["reason"] == "AnalysisPassed"
        assert done["lastAnalysis"]["verdict"] == "Passed"
        # RBAC refusals name the user (a namespace an earlier test left terminating may
        # refuse writes too: not the chart's doing, so not counted by code="403")
        assert "forbidden: User" not in (tmp_path / "operator.log").read_text()
    finally:
        backends.stop()
        as_chart.stop()
        operator.start()
        uninstall(helm, release, system)


def test_helm_test_hook_proves_the_operator_reconciles(
    helm: Helm,
    api: client.ApiClient,
    cluster: Cluster,
    operator: OperatorProcess,
    kubectl: Callable[..., str],
    make_namespace: Callable[..., str],
    tmp_path: Path,
) -> None:
    """What `helm test` runs, with the hook's own ServiceAccount and Role, against a real
    operator: it passes while the operator reconciles and fails once it is stopped. (kwok
    pods run no process, so the pod's command runs here, as the pod would run it.)"""
    release, system = release_name(), make_namespace()
    installed(helm, release, system)
    try:
        hooks = [
            d for d in yaml.safe_load_all(helm.ok("get", "hooks", release, f"-n={system}")) if d
        ]
        pod = next(h for h in hooks if h["kind"] == "Pod")
        rbac = tmp_path / "rbac.yaml"
        rbac.write_text(yaml.safe_dump_all([h for h in hooks if h["kind"] != "Pod"]))
        kubectl("apply", "-f", str(rbac))
        account = pod["spec"]["serviceAccountName"]
        kubeconfig = token_kubeconfig(api, cluster, account, system, tmp_path)

        (c,) = pod["spec"]["containers"]
        assert c["command"] == ["conch"]
        argv = [str(Path(sys.executable).parent / "conch"), *c["args"]]
        env = {**os.environ, "KUBECONFIG": str(kubeconfig)}

        def selftest(*extra: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*argv, *extra], capture_output=True, text=True, env=env, timeout=200, check=False
            )

        passed = selftest()
        assert passed.returncode == 0, passed.stderr
        assert "reconciled: stable conch-selftest-" in passed.stdout
        custom = client.CustomObjectsApi(api)
        for plural in ("modelservices", "modelversions"):  # nothing left behind
            eventually(
                lambda plural=plural: (
                    not custom.list_namespaced_custom_object(
                        "serving.conch.dev", "v1alpha1", system, plural
                    )["items"]
                ),
                what=f"{plural} deleted",
            )

        operator.stop()
        try:
            failed = selftest("--timeout=3")
        finally:
            operator.start()
        assert failed.returncode == 1
        assert "no status yet" in failed.stderr
    finally:
        uninstall(helm, release, system)
