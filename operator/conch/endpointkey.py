"""The endpoint key: Triton itself refuses callers that do not send it.

Triton's restricted-API options take one `header=value` per API group
(`--http-restricted-api=<apis>:<header>=<value>`; a second value for the same group is a
start-up error, "can not be specified in multiple config groups", checked on tritonserver
2.51). So Triton can hold one key per server, not one per consumer: the key is the
ModelService's, kept in a Secret its owner writes and names in `spec.access.keySecretRef`,
handed to each consumer the owner allows. Revoking one consumer means rotating the key
(rewrite the Secret: the operator rolls the pods onto the new value) and handing the new
key to the others. docs/catalog.md says why, and what per-consumer identity needs instead.
"""

from __future__ import annotations

from typing import Final

HEADER: Final = "conch-endpoint-key"
"""The HTTP header callers send the key in (lowercase: the flag also names gRPC's key)."""
GRPC_HEADER: Final = f"triton-grpc-protocol-{HEADER}"
"""The gRPC metadata key: Triton expects its `triton-grpc-protocol-` prefix there."""
SECRET_KEY: Final = "key"
"""The data key of the owner's Secret that holds the value."""
ENV: Final = "CONCH_ENDPOINT_KEY"
"""The Triton container's variable holding the key: the pod spec names the Secret, never
the value (`$(ENV)` in args is expanded by the kubelet)."""
VERSION_ANNOTATION: Final = "serving.conch.dev/endpoint-key-version"
"""Pod template annotation: the key Secret's resourceVersion, so a rotated key rolls the pods."""
RESTRICTED: Final = (
    "inference",
    "metadata",
    "model-config",
    "model-repository",
    "shared-memory",
    "statistics",
    "trace",
    "logging",
)
"""Every API group but health, which kubelet's probes call without a key."""


def triton_args(value: str) -> list[str]:
    """tritonserver flags requiring `value` in HEADER on HTTP and gRPC alike."""
    groups = ",".join(RESTRICTED)
    return [
        f"--http-restricted-api={groups}:{HEADER}={value}",
        f"--grpc-restricted-protocol={groups}:{HEADER}={value}",
    ]
