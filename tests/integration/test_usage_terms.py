"""Usage terms and grants on the real control plane, played by three teams (docs/catalog.md).

Team A publishes a ModelVersion with terms and grants it to team B; team B accepts the
terms and serves it; team C, without a grant, is refused. Every team is a user with
namespaced rights on Conch's kinds in its own namespace only (impersonation), and team A's
objects are never modified by the operator.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from conch.dev.cluster import Cluster
from tests.support import (
    GROUP,
    VERSION,
    as_user,
    eventually,
    example,
    get_service,
    stays,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("operator")]

TERMS = {"uri": "https://models.example.com/terms/digits-1.pdf", "sha256": "d" * 64}
DIGEST = "sha256:" + "d" * 64
RULES = [
    {
        "apiGroups": [GROUP],
        "resources": ["modelservices", "modelversions", "modelaccessgrants"],
        "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
    },
]


class Team:
    """A namespace and a user with namespaced rights on Conch's kinds in it, nothing else."""

    def __init__(self, cluster: Cluster, admin: client.ApiClient, name: str) -> None:
        self.ns = f"{name}-{uuid.uuid4().hex[:6]}"
        self.user = f"user-{self.ns}"
        client.CoreV1Api(admin).create_namespace({"metadata": {"name": self.ns}})
        self.api = as_user(cluster.kubeconfig, admin, self.ns, self.user, RULES, role="team")
        self.custom = client.CustomObjectsApi(self.api)

    def create(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(
            self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, plural, body)
        )

    def patch(self, plural: str, name: str, body: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.ns, plural, name, body)

    def delete(self, plural: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.ns, plural, name)

    def publish(self, name: str = "digits-v1", **usage: Any) -> dict[str, Any]:
        body = example("modelversion.yaml")
        body["metadata"] = {"name": name, "labels": {"serving.conch.dev/catalog": "shared"}}
        body["spec"]["usage"] = usage
        return self.create("modelversions", body)

    def grant(self, *consumers: Team, name: str = "digits") -> dict[str, Any]:
        return self.create(
            "modelaccessgrants",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "ModelAccessGrant",
                "metadata": {"name": name},
                "spec": {
                    "from": [{"namespace": c.ns} for c in consumers],
                    "to": [{"model": "digits"}],
                },
            },
        )

    def serve(self, owner: Team, name: str = "digits", **spec: Any) -> None:
        body = example("modelservice.yaml")
        body["metadata"]["name"] = name
        # on the CPU nodes: the GPUs stay free for the suites that need them
        body["spec"] |= {"modelNamespace": owner.ns, "resources": {"gpus": 0}, **spec}
        self.create("modelservices", body)


@pytest.fixture
def teams(cluster: Cluster, api: client.ApiClient) -> Iterator[Callable[[str], Team]]:
    made: list[Team] = []

    def make(name: str) -> Team:
        made.append(Team(cluster, api, name))
        return made[-1]

    yield make
    for team in made:
        client.CoreV1Api(api).delete_namespace(team.ns)


def deployments(api: client.ApiClient, ns: str) -> list[client.V1Deployment]:
    return list(client.AppsV1Api(api).list_namespaced_deployment(ns).items)


def warnings(api: client.ApiClient, ns: str, reason: str, kind: str = "Warning") -> list[Any]:
    return [
        e
        for e in client.CoreV1Api(api).list_namespaced_event(ns).items
        if e.reason == reason and e.type == kind
    ]


def refused(api: client.ApiClient, ns: str, reason: str, name: str = "digits") -> str:
    """Refused with `reason` and an Event, and nothing created; the Ready message."""
    cond = wait_for(api, ns, "Ready", "False", reason, name=name)
    eventually(lambda: warnings(api, ns, reason), what=f"a {reason} Event")
    assert deployments(api, ns) == []
    return str(cond["message"])


def versions_of(api: client.ApiClient, team: Team) -> dict[str, str]:
    """Every Conch object of `team` -> its resourceVersion (what changes on any write)."""
    custom = client.CustomObjectsApi(api)
    out = {}
    for plural in ("modelversions", "modelaccessgrants"):
        for obj in custom.list_namespaced_custom_object(GROUP, VERSION, team.ns, plural)["items"]:
            out[f"{plural}/{obj['metadata']['name']}"] = obj["metadata"]["resourceVersion"]
    return out


def settled_version(api: client.ApiClient, team: Team, name: str = "digits-v1") -> None:
    """The owner's ModelVersion after the operator's own status write (its usedBy)."""

    def observed() -> bool:
        mv = client.CustomObjectsApi(api).get_namespaced_custom_object(
            GROUP, VERSION, team.ns, "modelversions", name
        )
        return "observedGeneration" in mv.get("status", {})

    eventually(observed, what=f"{name}'s status")


def replicas(api: client.ApiClient, ns: str) -> list[int]:
    return sorted(int(d.spec.replicas or 0) for d in deployments(api, ns))


def test_b_accepts_and_serves_while_c_without_a_grant_is_refused(
    api: client.ApiClient, teams: Callable[[str], Team]
) -> None:
    a, b, c = teams("team-a"), teams("team-b"), teams("team-c")
    a.publish(
        license="Apache-2.0",
        terms=TERMS,
        purposes=["research"],
        allowedNamespaces=[b.ns, c.ns],
    )
    a.grant(b)
    settled_version(api, a)
    before = versions_of(api, a)

    c.serve(a, acceptTerms=[DIGEST])
    c.serve(a, name="probe", modelVersion="no-such-version", acceptTerms=[DIGEST])
    denied = refused(api, c.ns, "UsageNotGranted")
    probed = refused(api, c.ns, "UsageNotGranted", name="probe")
    # the same answer whether or not the version exists: no existence oracle
    assert denied.replace("digits-v1", "X").replace("'digits'", "'S'") == probed.replace(
        "no-such-version", "X"
    ).replace("'probe'", "'S'")

    b.serve(a)
    assert DIGEST in refused(api, b.ns, "TermsNotAccepted")
    b.patch("modelservices", "digits", {"spec": {"acceptTerms": [DIGEST]}})
    wait_for(api, b.ns, "Ready", "True", "Available", timeout=90)
    accepted = get_service(api, b.ns)["status"]["acceptedTerms"]
    assert [(t["modelVersion"], t["digest"]) for t in accepted] == [("digits-v1", DIGEST)]
    eventually(lambda: warnings(api, b.ns, "TermsAccepted", "Normal"), what="TermsAccepted")

    # nothing of team A's was written by the operator for B or C
    assert versions_of(api, a) == before
    assert deployments(api, a.ns) == []


def test_revoking_the_grant_scales_to_zero_and_a_new_grant_brings_it_back(
    api: client.ApiClient, teams: Callable[[str], Team]
) -> None:
    a, b = teams("team-a"), teams("team-b")
    a.publish(allowedNamespaces=[b.ns])
    a.grant(b)
    b.serve(a)
    wait_for(api, b.ns, "Ready", "True", "Available", timeout=90)
    [serving] = deployments(api, b.ns)
    settled_version(api, a)
    before = versions_of(api, a)

    a.delete("modelaccessgrants", "digits")
    wait_for(api, b.ns, "Ready", "False", "UsageNotGranted")
    eventually(lambda: replicas(api, b.ns) == [0], what="scaled to zero")
    [kept] = deployments(api, b.ns)
    assert kept.metadata.uid == serving.metadata.uid  # scaled, not deleted
    assert client.CoreV1Api(api).read_namespaced_service("digits", b.ns)
    eventually(lambda: warnings(api, b.ns, "ScaledToZero"), what="a ScaledToZero Event")

    a.grant(b)
    wait_for(api, b.ns, "Ready", "True", "Available", timeout=90)
    assert replicas(api, b.ns) == [2]  # the HPA's minimum: autoscaling is on again
    assert deployments(api, b.ns)[0].metadata.uid == serving.metadata.uid
    del before["modelaccessgrants/digits"]  # A itself deleted and re-created it
    after = versions_of(api, a)
    del after["modelaccessgrants/digits"]
    assert after == before


def test_expiry_scales_to_zero_at_the_instant(
    api: client.ApiClient, teams: Callable[[str], Team]
) -> None:
    a, b = teams("team-a"), teams("team-b")
    expires = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=30)
    a.publish(allowedNamespaces=[b.ns], expires=expires.isoformat().replace("+00:00", "Z"))
    a.grant(b)
    b.serve(a)
    eventually(lambda: replicas(api, b.ns) == [2], timeout=25, what="served before expiry")
    cond = wait_for(api, b.ns, "Ready", "False", "TermsExpired", timeout=60)
    assert dt.datetime.now(dt.UTC) >= expires
    assert expires.isoformat().replace("+00:00", "Z") in cond["message"]
    eventually(lambda: replicas(api, b.ns) == [0], what="scaled to zero")

    b.serve(a, name="late")  # a new service of an expired version never starts
    wait_for(api, b.ns, "Ready", "False", "TermsExpired", name="late")
    stays(lambda: len(deployments(api, b.ns)) == 1, 2, "nothing created for the late one")


def test_secrets_do_not_travel_and_terms_can_forbid_request_logging(
    api: client.ApiClient, teams: Callable[[str], Team]
) -> None:
    a, b = teams("team-a"), teams("team-b")
    body = example("modelversion.yaml")
    body["metadata"]["name"] = "private-v1"
    body["spec"]["source"]["credentialsSecretRef"] = {"name": "models"}
    body["spec"]["usage"] = {"allowedNamespaces": [b.ns]}
    a.create("modelversions", body)
    a.publish(allowedNamespaces=[b.ns], data={"retain": False})
    a.grant(b)
    b.serve(a, name="private", modelVersion="private-v1")
    b.serve(a, triton={"extraArgs": ["--log-verbose=1"]})
    refused(api, b.ns, "CredentialsNotShared", name="private")
    assert "--log-verbose=1" in refused(api, b.ns, "RequestLoggingNotAllowed")
    b.patch("modelservices", "digits", {"spec": {"triton": {"extraArgs": ["--log-info=true"]}}})
    wait_for(api, b.ns, "Ready", "True", "Available", timeout=90)


def rejection(call: Callable[[], object]) -> str:
    with pytest.raises(ApiException) as caught:
        call()
    assert caught.value.status == 422, caught.value.body
    return str(json.loads(caught.value.body)["message"])


@pytest.mark.parametrize(
    ("usage", "message"),
    [
        ({"license": "Apache 2.0"}, "SPDX"),
        ({"terms": {"uri": "http://models.example.com/t", "sha256": "d" * 64}}, "https://"),
        ({"terms": {"uri": "https://u:p@models.example.com/t", "sha256": "d" * 64}}, "user:"),
        ({"terms": {"uri": "https://models.example.com/t", "sha256": "sha256:" + "d" * 64}}, "64"),
        ({"data": {"logRequests": True}}, "logRequests needs retain"),
        ({"data": {"retain": True, "retention": "30d"}}, "whole number of hours"),
        ({"allowedNamespaces": ["Team_B"]}, "allowedNamespaces"),
        ({"purposes": ["a", "a"]}, "Duplicate value"),
        ({"expires": "next tuesday"}, "expires"),
    ],
)
def test_bad_usage_fields_are_refused_by_the_api_server(
    api: client.ApiClient, namespace: str, usage: dict[str, Any], message: str
) -> None:
    body = example("modelversion.yaml")
    body["spec"]["usage"] = usage
    custom = client.CustomObjectsApi(api)
    text = rejection(
        lambda: custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "modelversions", body
        )
    )
    assert message in text, text


def test_usage_is_immutable_and_grants_and_acceptance_are_checked(
    api: client.ApiClient, namespace: str
) -> None:
    custom = client.CustomObjectsApi(api)
    body = example("modelversion.yaml")
    body["spec"]["usage"] = {"license": "MIT"}
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "modelversions", body)
    assert "immutable" in rejection(
        lambda: custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "modelversions",
            "digits-v1",
            {"spec": {"usage": {"license": "Apache-2.0"}}},
        )
    )
    # the catalog label is not spec: publishing and unpublishing need no new version
    custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "modelversions",
        "digits-v1",
        {"metadata": {"labels": {"serving.conch.dev/catalog": "shared"}}},
    )
    grant = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelAccessGrant",
        "metadata": {"name": "both"},
        "spec": {"from": [{"namespace": "b"}], "to": [{"model": "digits", "modelVersion": "x"}]},
    }
    assert "exactly one" in rejection(
        lambda: custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "modelaccessgrants", grant
        )
    )
    svc = example("modelservice.yaml")
    svc["spec"]["acceptTerms"] = ["d" * 64]
    assert "sha256:<64 lowercase hex>" in rejection(
        lambda: custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "modelservices", svc
        )
    )
