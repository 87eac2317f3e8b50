"""The contract between the operator and the serving pods' init container, written once.

The operator's Deployment builder writes a `pull` command line and the runtime's CLI reads
it; both take the command, the container name, the flags, where claims are mounted and how
a `pvc://` URI names its claim from here, so neither can drift from the other. Standard
library only: the runtime never imports the operator, and the operator imports this.
"""

from __future__ import annotations

from conch_runtime.uri import PvcSource, parse_uri

__all__ = [
    "COMMAND",
    "CONTAINER",
    "PVC_ROOT",
    "Flag",
    "claim_mount",
    "pvc_claim",
]

COMMAND = "pull"
"""The runtime subcommand the init container runs."""
CONTAINER = "pull-model"
"""The init container's name: the operator reads its exit code back from pod status."""
PVC_ROOT = "/mnt/pvc"
"""Where the pod mounts PersistentVolumeClaims, one folder per claim."""


class Flag:
    """The `pull` command's flags."""

    URI = "--uri"
    SHA256 = "--sha256"
    DEST = "--dest"
    S3_ENDPOINT = "--s3-endpoint"
    CREDENTIALS_DIR = "--credentials-dir"
    CREDENTIALS_HOST = "--credentials-host"
    ALLOW_FILE = "--allow-file"
    PVC_ROOT = "--pvc-root"
    MAX_BYTES = "--max-bytes"
    MAX_RATIO = "--max-ratio"
    MAX_UNPACKED_BYTES = "--max-unpacked-bytes"
    DEADLINE = "--deadline"
    INSTANCE_COUNT = "--instance-count"
    INSTANCE_KIND = "--instance-kind"
    MAX_QUEUE_DELAY_US = "--max-queue-delay-us"
    PREFERRED_BATCH_SIZE = "--preferred-batch-size"


def pvc_claim(uri: str) -> str | None:
    """The claim a `pvc://CLAIM/PATH` URI reads from; None for any other scheme. Raises
    UnsupportedSource for a malformed URI (the same parser the pull uses)."""
    if not uri.startswith("pvc://"):
        return None
    source = parse_uri(uri)
    assert isinstance(source, PvcSource)
    return source.claim


def claim_mount(claim: str, root: str = PVC_ROOT) -> str:
    """Where a claim is mounted, and so where the pull looks for its files."""
    return f"{root.rstrip('/')}/{claim}"
