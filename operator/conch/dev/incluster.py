"""The operator in the sandbox as a cluster runs it: its own image, installed by the chart,
in a pod on the real node. These are the chart values that place it there.

The node's pods cannot reach the API server: it listens on 127.0.0.1 and there is no
kube-proxy for the kubernetes Service. The chart's `sandbox.hostNetwork` value puts the
operator pod in the node's network namespace, where that loopback address is, and binds the
operator's listeners to loopback too (docs/real-node.md says why this and not a second API
server listener on the bridge). The image is imported into the node, never pulled.
"""

from __future__ import annotations

from typing import Any

from conch.dev.nodeconfig import NODE_LABEL, NODE_TAINT

CONCH = "/opt/conch/bin/conch"
"""The conch executable in the image `conch dev images` builds (the chart's `helm test`)."""


def sandbox_values(
    operator_image: str, api_port: int, metrics_port: int, health_port: int
) -> dict[str, Any]:
    """Chart values for one operator replica on the real node, reaching the API server at
    127.0.0.1:`api_port`, serving metrics and health on the node's loopback ports."""
    repository, tag = operator_image.rsplit(":", 1)
    return {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "nodeSelector": {NODE_LABEL[0]: NODE_LABEL[1]},
        "tolerations": [{**NODE_TAINT, "operator": "Equal"}],
        "leaderElection": {"enabled": False},
        "sandbox": {
            "hostNetwork": True,
            "apiServer": f"127.0.0.1:{api_port}",
            "metricsPort": metrics_port,
            "healthPort": health_port,
        },
        "test": {"command": [CONCH]},
    }
