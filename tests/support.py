"""Test helpers shared by the suites."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kubernetes import client, config

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
GROUP, VERSION = "serving.conch.dev", "v1alpha1"


def eventually(check: Callable[[], T | None], timeout: float = 60, what: str = "") -> T:
    """Poll until `check` returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}: last={last!r}")


def stays(check: Callable[[], object], seconds: float, what: str = "") -> None:
    """Assert that `check` stays truthy for `seconds` (polled): for "nothing moves" claims."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert check(), f"{what or check} stopped holding"
        time.sleep(0.25)


# -- Conch resources on a real API server ---------------------------------------------


def example(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "examples" / name).read_text()))


def create_version(
    api: client.ApiClient, ns: str, name: str = "digits-v1", **compression: Any
) -> None:
    body = example("modelversion.yaml")
    body["metadata"]["name"] = name
    body["spec"]["compression"] |= compression
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, ns, "modelversions", body
    )


def create_service(api: client.ApiClient, ns: str, name: str = "digits", **spec: Any) -> None:
    body = example("modelservice.yaml")
    body["metadata"]["name"] = name
    body["spec"] |= spec
    body["spec"] = {k: v for k, v in body["spec"].items() if v is not None}
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, ns, "modelservices", body
    )


def get_service(api: client.ApiClient, ns: str, name: str = "digits") -> dict[str, Any]:
    return dict(
        client.CustomObjectsApi(api).get_namespaced_custom_object(
            GROUP, VERSION, ns, "modelservices", name
        )
    )


def condition(
    api: client.ApiClient, ns: str, type_: str, name: str = "digits"
) -> dict[str, Any] | None:
    conditions = get_service(api, ns, name).get("status", {}).get("conditions", [])
    return next((c for c in conditions if c["type"] == type_), None)


def wait_for(
    api: client.ApiClient,
    ns: str,
    type_: str,
    status: str,
    reason: str | None = None,
    name: str = "digits",
    timeout: float = 60,
) -> dict[str, Any]:
    def matches() -> dict[str, Any] | None:
        cond = condition(api, ns, type_, name)
        if cond and cond["status"] == status and (reason is None or cond["reason"] == reason):
            return cond
        return None

    return eventually(matches, timeout, what=f"{name} {type_}={status} {reason or ''}")


def as_user(
    kubeconfig: Path,
    admin: client.ApiClient,
    namespace: str,
    user: str,
    rules: list[dict[str, Any]],
    role: str = "tenant",
) -> client.ApiClient:
    """An ApiClient that acts as `user` (impersonation by the admin), whose only rights are
    `rules` in `namespace` (a Role and RoleBinding named `role`)."""
    rbac = client.RbacAuthorizationV1Api(admin)
    rbac.create_namespaced_role(namespace, {"metadata": {"name": role}, "rules": rules})
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": role},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        },
    )
    api = config.new_client_from_config(str(kubeconfig))
    api.set_default_header("Impersonate-User", user)
    return api
