"""The kubernetes client package, for CLI commands only.

The operator never imports it (`conch.rest` does its requests; a test keeps it so). The
CLI runs on people's machines, where a kubeconfig may log in through exec plugins or auth
providers that only the full client understands, so CLI commands read credentials here.
"""

from __future__ import annotations

import logging

from kubernetes import client, config

from conch.kopf_alone import kopf
from conch.rest import Login, Rest

log = logging.getLogger("conch.cli")


def load_api_client(pool_size: int = 16) -> client.ApiClient:
    """In-cluster credentials when running in a pod, else $KUBECONFIG / ~/.kube/config."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    configuration.connection_pool_maxsize = pool_size
    return client.ApiClient(configuration)


def cli_rest(pool_size: int = 2) -> Rest:
    """A `conch.rest` client with the credentials the kubernetes client reads (kopf's
    `login_via_client`: in a pod, or whatever the kubeconfig's user says)."""
    info = kopf.login_via_client(logger=log, settings=kopf.OperatorSettings())
    if info is None:
        raise kopf.LoginError("the kubernetes client found no credentials")
    return Rest(Login(info), pool_size=pool_size)


def current_namespace() -> str:
    """The kubeconfig context's namespace; "default" in a pod or without one."""
    try:
        _, context = config.list_kube_config_contexts()
    except config.ConfigException:
        return "default"  # in a pod: the caller names it with -n
    return str((context or {}).get("context", {}).get("namespace") or "default")
