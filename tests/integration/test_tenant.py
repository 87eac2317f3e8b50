"""A tenant can do no more through Conch than by hand (docs/security.md).

The tenant is a user with namespaced rights on ModelServices and ModelVersions (and their
status) and nothing else, played by impersonation on the real API server. The admin is the
test's own system:masters client. Every case asserts that the other party's objects are
untouched afterwards.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from conch.builders.meta import version_child_name
from conch.dev.cluster import Cluster
from conch.dev.toolchain import Toolchain
from tests.support import (
    GROUP,
    ROOT,
    VERSION,
    as_user,
    create_service,
    create_version,
    eventually,
    example,
    get_service,
    stays,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("operator")]

TENANT = "tenant-alice"
TENANT_RULES = [
    {
        "apiGroups": [GROUP],
        "resources": ["modelservices", "modelversions"],
        "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
    },
    {
        "apiGroups": [GROUP],
        "resources": ["modelservices/status", "modelversions/status"],
        "verbs": ["get", "patch", "update"],
    },
]
# (verb, group, resource): what the tenant may do by hand, checked on the real API server
CAN_I = [
    ("create", GROUP, "modelservices", True),
    ("create", GROUP, "modelversions", True),
    ("patch", GROUP, "modelservices/status", True),
    ("create", "", "pods", False),
    ("create", "apps", "deployments", False),
    ("create", "", "services", False),
    ("patch", "", "services", False),
    ("delete", "", "services", False),
    ("create", "networking.k8s.io", "networkpolicies", False),
    ("delete", "networking.k8s.io", "networkpolicies", False),
    ("get", "", "secrets", False),
]


@pytest.fixture
def tenant(cluster: Cluster, api: client.ApiClient, namespace: str) -> client.ApiClient:
    """An ApiClient acting as the tenant, bound to its Role in `namespace`."""
    return as_user(cluster.kubeconfig, api, namespace, TENANT, TENANT_RULES)


def custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def reason_of(api: client.ApiClient, ns: str, type_: str = "Ready", name: str = "digits") -> str:
    conditions = get_service(api, ns, name).get("status", {}).get("conditions", [])
    return next((c["reason"] for c in conditions if c["type"] == type_), "")


def deployments(api: client.ApiClient, ns: str) -> list[client.V1Deployment]:
    return list(client.AppsV1Api(api).list_namespaced_deployment(ns).items)


def warning_events(api: client.ApiClient, ns: str, reason: str) -> list[Any]:
    return [
        e
        for e in client.CoreV1Api(api).list_namespaced_event(ns).items
        if e.reason == reason and e.type == "Warning"
    ]


def refused(api: client.ApiClient, ns: str, reason: str, name: str = "digits") -> None:
    """The service is refused with `reason`, an Event says so, and nothing was created."""
    wait_for(api, ns, "Ready", "False", reason, name=name)
    eventually(lambda: warning_events(api, ns, reason), what=f"a {reason} Event")
    assert deployments(api, ns) == []


def test_the_tenant_has_namespaced_model_rights_only(
    tenant: client.ApiClient, namespace: str
) -> None:
    review = client.AuthorizationV1Api(tenant)
    answers = {}
    for verb, group, resource, _ in CAN_I:
        plural, _, sub = resource.partition("/")
        attrs = {"verb": verb, "group": group, "resource": plural, "namespace": namespace}
        if sub:
            attrs["subresource"] = sub
        result = review.create_self_subject_access_review({"spec": {"resourceAttributes": attrs}})
        answers[verb, group, resource] = result.status.allowed
    assert answers == {(v, g, r): allowed for v, g, r, allowed in CAN_I}


def test_a_name_held_by_someone_else_is_never_taken_over(
    api: client.ApiClient, tenant: client.ApiClient, namespace: str
) -> None:
    core, net = client.CoreV1Api(api), client.NetworkingV1Api(api)
    core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "digits"},
            "spec": {"selector": {"app": "admin"}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    )
    net.create_namespaced_network_policy(
        namespace,
        {"metadata": {"name": "digits"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}},
    )
    before = (
        core.read_namespaced_service("digits", namespace).metadata.resource_version,
        net.read_namespaced_network_policy("digits", namespace).metadata.resource_version,
    )
    create_version(tenant, namespace)
    create_service(tenant, namespace)
    refused(api, namespace, "NameConflict")
    message = next(c["message"] for c in get_service(api, namespace)["status"]["conditions"])
    assert "Service digits" in message and "NetworkPolicy digits" in message

    custom(tenant).delete_namespaced_custom_object(
        GROUP, VERSION, namespace, "modelservices", "digits"
    )
    service = core.read_namespaced_service("digits", namespace)
    policy = net.read_namespaced_network_policy("digits", namespace)
    assert (service.metadata.resource_version, policy.metadata.resource_version) == before
    assert not service.metadata.owner_references and not policy.metadata.owner_references
    assert service.spec.selector == {"app": "admin"}


def test_credentials_go_only_where_the_admin_allows(
    api: client.ApiClient, tenant: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {
                "name": "sa-token",
                "annotations": {"kubernetes.io/service-account.name": "default"},
                "labels": {"serving.conch.dev/artifact-credentials": "true"},
            },
            "type": "kubernetes.io/service-account-token",
        },
    )
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "plain"}, "stringData": {"token": "s3cr3t"}}
    )
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {
                "name": "models",
                "labels": {"serving.conch.dev/artifact-credentials": "true"},
                "annotations": {"serving.conch.dev/credentials-hosts": "models.example.com"},
            },
            "stringData": {"token": "s3cr3t"},
        },
    )
    cases = [
        ("token", "sa-token", "https://models.example.com/d.tar", "CredentialsNotAllowed"),
        ("plain", "plain", "https://models.example.com/d.tar", "CredentialsNotAllowed"),
        ("elsewhere", "models", "https://attacker.example/d.tar", "CredentialsNotAllowed"),
        (
            "local",
            None,
            "file:///var/run/secrets/kubernetes.io/serviceaccount/token",
            "SourceNotAllowed",
        ),
    ]
    for name, secret, uri, _ in cases:
        version_from(tenant, namespace, f"{name}-v1", uri, secret)
        create_service(tenant, namespace, name=name, modelVersion=f"{name}-v1")
    for name, _, _, reason in cases:
        refused(api, namespace, reason, name=name)
    assert "attacker.example:443" in ready_message(api, namespace, "elsewhere")
    assert "ServiceAccount token" in ready_message(api, namespace, "token")
    assert "opted in" in ready_message(api, namespace, "plain")

    version_from(tenant, namespace, "ok-v1", "https://models.example.com/d.tar", "models")
    create_service(tenant, namespace, name="ok", modelVersion="ok-v1")
    pull = eventually(lambda: _pull_args(api, namespace, "ok", "ok-v1"), what="the pull step")
    assert pull[pull.index("--credentials-host") + 1] == "models.example.com:443"


def version_from(api: client.ApiClient, ns: str, name: str, uri: str, secret: str | None) -> None:
    """The example ModelVersion as `name`, with another source."""
    body = example("modelversion.yaml")
    body["metadata"]["name"] = name
    body["spec"]["source"]["uri"] = uri
    if secret:
        body["spec"]["source"]["credentialsSecretRef"] = {"name": secret}
    custom(api).create_namespaced_custom_object(GROUP, VERSION, ns, "modelversions", body)


def ready_message(api: client.ApiClient, ns: str, name: str) -> str:
    conditions = get_service(api, ns, name)["status"]["conditions"]
    return str(next(c["message"] for c in conditions if c["type"] == "Ready"))


def _pull_args(api: client.ApiClient, ns: str, svc: str, mv: str) -> list[str] | None:
    try:
        dep = client.AppsV1Api(api).read_namespaced_deployment(version_child_name(svc, mv), ns)
    except ApiException:
        return None
    return list(dep.spec.template.spec.init_containers[0].args)


def test_status_is_output_never_input(
    api: client.ApiClient, tenant: client.ApiClient, namespace: str
) -> None:
    create_version(tenant, namespace)
    create_service(tenant, namespace, autoscaling=None, replicas=2)
    wait_for(api, namespace, "Ready", "True")
    name = version_child_name("digits", "digits-v1")
    apps = client.AppsV1Api(api)
    generation = apps.read_namespaced_deployment(name, namespace).metadata.generation

    # a name that would climb out of the namespace never gets past the schema
    with pytest.raises(ApiException) as refused_by_schema:
        patch_status(tenant, namespace, {"stable": {"version": "../../other/modelversions/x"}})
    assert refused_by_schema.value.status == 422
    assert "status.stable.version" in str(refused_by_schema.value.body)

    # a made-up stable version: the live Deployment wins and is never scaled down
    patch_status(tenant, namespace, {"stable": {"version": "ghost", "replicas": 0}})
    eventually(
        lambda: warning_events(api, namespace, "StatusRebuilt"), what="a StatusRebuilt Event"
    )
    eventually(
        lambda: get_service(api, namespace)["status"]["stable"]["version"] == "digits-v1",
        what="status rebuilt from the live Deployment",
    )

    def untouched() -> bool:
        dep = apps.read_namespaced_deployment(name, namespace)
        return bool(dep.spec.replicas == 2 and dep.metadata.generation == generation)

    stays(untouched, 3, what="the live Deployment untouched")
    assert [d.metadata.name for d in deployments(api, namespace)] == [name]


def patch_status(api: client.ApiClient, ns: str, status: dict[str, Any]) -> None:
    custom(api).patch_namespaced_custom_object_status(
        GROUP, VERSION, ns, "modelservices", "digits", {"status": status}
    )


@pytest.fixture
def in_use_policy(
    toolchain: Toolchain, kubectl: Callable[..., str], namespace: str, tmp_path: Path
) -> Iterator[None]:
    """The chart's ValidatingAdmissionPolicy, bound (via watchNamespaces) to `namespace`."""
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    rendered = subprocess.run(
        [
            toolchain.binary("helm"),
            "template",
            f"conch-{namespace}",
            str(ROOT / "charts" / "conch"),
            "--kube-version",
            "1.36.3",
            "--show-only",
            "templates/modelversion-in-use.yaml",
            "--set",
            f"watchNamespaces={{{namespace}}}",
        ],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    manifest = tmp_path / "policy.yaml"
    manifest.write_text(rendered)
    kubectl("apply", "-f", str(manifest))
    try:
        yield
    finally:
        kubectl("delete", "--ignore-not-found", "-f", str(manifest))


def delete_version(api: client.ApiClient, ns: str, name: str, dry_run: bool = False) -> None:
    custom(api).delete_namespaced_custom_object(
        GROUP, VERSION, ns, "modelversions", name, dry_run="All" if dry_run else None
    )


@pytest.mark.usefixtures("in_use_policy")
def test_an_in_use_model_version_cannot_be_deleted(
    api: client.ApiClient, tenant: client.ApiClient, namespace: str
) -> None:
    create_version(tenant, namespace)
    create_service(tenant, namespace, autoscaling=None, replicas=1)
    wait_for(api, namespace, "Ready", "True")
    eventually(
        lambda: (
            custom(api)
            .get_namespaced_custom_object(GROUP, VERSION, namespace, "modelversions", "digits-v1")
            .get("status", {})
            .get("usedBy")
        ),
        what="usedBy",
    )

    def refused_delete(dry_run: bool) -> ApiException | None:
        try:
            delete_version(tenant, namespace, "digits-v1", dry_run=dry_run)
        except ApiException as error:
            return error
        return None

    # admission policies take a moment to be in force: wait with dry runs, which pass
    # through admission but delete nothing
    eventually(lambda: refused_delete(dry_run=True), what="the policy in force")
    error = refused_delete(dry_run=False)
    assert error is not None and error.status == 403
    assert "in use by ModelService(s) digits" in str(error.body)


def test_a_model_version_that_disappears_takes_no_capacity(
    api: client.ApiClient, tenant: client.ApiClient, namespace: str
) -> None:
    """Without the admission policy (this namespace is not bound): the stable version's
    ModelVersion deleted mid-rollout leaves its Deployment serving as it was."""
    create_version(tenant, namespace)
    create_service(
        tenant,
        namespace,
        autoscaling=None,
        replicas=2,
        # timed steps (no metrics source here): the rollout holds at 50% for an hour
        rollout={"steps": [{"weight": 50, "pause": "1h"}], "analysis": {"enabled": False}},
    )
    wait_for(api, namespace, "Ready", "True")
    create_version(tenant, namespace, name="digits-v2")
    custom(tenant).patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "modelservices",
        "digits",
        {"spec": {"modelVersion": "digits-v2"}},
    )
    stable = version_child_name("digits", "digits-v1")
    canary = version_child_name("digits", "digits-v2")
    apps = client.AppsV1Api(api)

    def at_the_step() -> bool:  # 2 replicas at 50%: one each, the canary ready
        live = {d.metadata.name: d for d in deployments(api, namespace)}
        return (
            set(live) == {stable, canary}
            and live[stable].spec.replicas == 1
            and (live[canary].status.ready_replicas or 0) == 1
        )

    eventually(at_the_step, what="the rollout at its first step (one replica each)")
    replicas = apps.read_namespaced_deployment(stable, namespace).spec.replicas
    delete_version(tenant, namespace, "digits-v1")
    eventually(
        lambda: (
            reason_of(api, namespace, "Degraded") == "ModelVersionNotFound"
            or reason_of(api, namespace, "Progressing") == "ModelVersionNotFound"
        ),
        what="the missing ModelVersion reported",
    )
    stays(
        lambda: apps.read_namespaced_deployment(stable, namespace).spec.replicas == replicas,
        5,
        what="the stable Deployment keeps its replicas",
    )


POD_WISHES = [
    # (service name, spec change, words in the refusal)
    (
        "image",
        {"triton": {"image": "registry.example/evil/tritonserver:latest"}},
        "spec.triton.image",
    ),
    (
        "priority",
        {"scheduling": {"priorityClassName": "system-node-critical"}},
        "system-node-critical",
    ),
    ("tolerate-all", {"scheduling": {"tolerations": [{"operator": "Exists"}]}}, "toleration"),
    ("pin-node", {"scheduling": {"nodeSelector": {"kubernetes.io/hostname": "cpu-0"}}}, "hostname"),
    ("repo-flag", {"triton": {"extraArgs": ["--model-repo=/etc"]}}, "--model-repository"),
    ("load-space", {"triton": {"extraArgs": ["--load-model", "other"]}}, "--load-model"),
]


def test_what_reaches_a_pod_is_policy_not_wish(
    api: client.ApiClient, tenant: client.ApiClient, namespace: str
) -> None:
    create_version(tenant, namespace)
    for name, spec, _ in POD_WISHES:
        create_service(tenant, namespace, name=name, **spec)
    for name, _, words in POD_WISHES:
        refused(api, namespace, "PolicyViolation", name=name)
        assert words in ready_message(api, namespace, name), name
