"""Where artifact credentials may go: the operator's check, as a table."""

from __future__ import annotations

from typing import Any

import pytest

from conch import reasons
from conch.api import ModelVersion
from conch.artifacts import ArtifactAccess, check
from conch.errors import ConchError

SHA = "0" * 64
OPTED_IN = {"serving.conch.dev/artifact-credentials": "true"}


def mv(uri: str, secret: str | None = "creds") -> ModelVersion:
    source: dict[str, Any] = {"uri": uri, "sha256": SHA}
    if secret:
        source["credentialsSecretRef"] = {"name": secret}
    return ModelVersion.model_validate(
        {
            "metadata": {"name": "digits-v1", "namespace": "ml"},
            "spec": {
                "model": "digits",
                "version": "1",
                "format": "python",
                "source": source,
                "signature": {
                    "inputs": [{"name": "x", "dataType": "TYPE_FP32", "dims": [64]}],
                    "outputs": [{"name": "y", "dataType": "TYPE_FP32", "dims": [10]}],
                },
            },
        }
    )


def secret(labels: dict[str, str] | None = None, **annotations: str) -> dict[str, Any]:
    return {"metadata": {"name": "creds", "labels": labels or {}, "annotations": annotations}}


HOSTS = "serving.conch.dev/credentials-hosts"
SA = "kubernetes.io/service-account.name"

ALLOWED = [
    # (case, uri, secret metadata, access, --credentials-host values)
    ("no secret", "https://evil.example/x.tar", None, ArtifactAccess(), []),
    (
        "host allowed by the operator",
        "https://models.example.com/x.tar",
        secret(OPTED_IN),
        ArtifactAccess(credentials_hosts=("models.example.com",)),
        ["models.example.com:443"],
    ),
    (
        "host allowed by the secret's annotation",
        "https://models.example.com/x.tar",
        secret(OPTED_IN, **{HOSTS: "other.example, models.example.com"}),
        ArtifactAccess(),
        ["models.example.com:443"],
    ),
    (
        "bucket and endpoint",
        "s3://models/x.tar",
        secret(OPTED_IN),
        ArtifactAccess(
            credentials_hosts=("models", "s3.internal.example"),
            s3_endpoint="https://s3.internal.example",
        ),
        ["models", "s3.internal.example:443"],
    ),
    (
        "subdomain pattern",
        "https://eu.models.example.com/x.tar",
        secret(OPTED_IN),
        ArtifactAccess(credentials_hosts=("*.models.example.com",)),
        ["eu.models.example.com:443"],
    ),
    ("file:// in the sandbox", "file:///tmp/x.tar", None, ArtifactAccess(allow_file=True), []),
]


@pytest.mark.parametrize(
    ("uri", "meta", "access", "hosts"), [c[1:] for c in ALLOWED], ids=[c[0] for c in ALLOWED]
)
def test_allowed(uri: str, meta: Any, access: ArtifactAccess, hosts: list[str]) -> None:
    assert check(mv(uri, "creds" if meta else None), meta, access) == hosts


REFUSED = [
    # (case, uri, secret metadata, access, reason, words in the message)
    (
        "file:// outside the sandbox",
        "file:///var/run/secrets/kubernetes.io/serviceaccount/token",
        None,
        ArtifactAccess(),
        reasons.SOURCE_NOT_ALLOWED,
        "--allow-file-sources",
    ),
    (
        "secret missing",
        "https://models.example.com/x.tar",
        None,
        ArtifactAccess(credentials_hosts=("models.example.com",)),
        reasons.CREDENTIALS_NOT_ALLOWED,
        "not found",
    ),
    (
        "secret not opted in",
        "https://models.example.com/x.tar",
        secret(),
        ArtifactAccess(credentials_hosts=("models.example.com",)),
        reasons.CREDENTIALS_NOT_ALLOWED,
        "serving.conch.dev/artifact-credentials=true",
    ),
    (
        "a service account token, even opted in",
        "https://models.example.com/x.tar",
        secret(OPTED_IN, **{SA: "default"}),
        ArtifactAccess(credentials_hosts=("models.example.com",)),
        reasons.CREDENTIALS_NOT_ALLOWED,
        "ServiceAccount token",
    ),
    (
        "host of the tenant's choosing",
        "https://attacker.example/x.tar",
        secret(OPTED_IN),
        ArtifactAccess(credentials_hosts=("models.example.com",)),
        reasons.CREDENTIALS_NOT_ALLOWED,
        "attacker.example:443",
    ),
    (
        "a look-alike host",
        "https://models.example.com.attacker.example/x.tar",
        secret(OPTED_IN),
        ArtifactAccess(credentials_hosts=("models.example.com",)),
        reasons.CREDENTIALS_NOT_ALLOWED,
        "may not go to",
    ),
    (
        "userinfo trick (credentials in a URI are refused outright)",
        "https://models.example.com@attacker.example/x.tar",
        secret(OPTED_IN),
        ArtifactAccess(credentials_hosts=("models.example.com",)),
        reasons.SOURCE_NOT_ALLOWED,
        "credentials in the URI",
    ),
    (
        "another port",
        "https://models.example.com:8443/x.tar",
        secret(OPTED_IN),
        ArtifactAccess(credentials_hosts=("models.example.com:443",)),
        reasons.CREDENTIALS_NOT_ALLOWED,
        "models.example.com:8443",
    ),
    (
        "bucket allowed but not the endpoint",
        "s3://models/x.tar",
        secret(OPTED_IN),
        ArtifactAccess(credentials_hosts=("models",), s3_endpoint="https://attacker.example"),
        reasons.CREDENTIALS_NOT_ALLOWED,
        "attacker.example:443",
    ),
    (
        "nothing allowed at all",
        "https://models.example.com/x.tar",
        secret(OPTED_IN),
        ArtifactAccess(),
        reasons.CREDENTIALS_NOT_ALLOWED,
        "no hosts",
    ),
    (
        "a malformed host in the annotation",
        "https://models.example.com/x.tar",
        secret(OPTED_IN, **{HOSTS: "http://models.example.com/"}),
        ArtifactAccess(),
        reasons.CREDENTIALS_NOT_ALLOWED,
        "credentials-host",
    ),
]


@pytest.mark.parametrize(
    ("uri", "meta", "access", "reason", "words"),
    [c[1:] for c in REFUSED],
    ids=[c[0] for c in REFUSED],
)
def test_refused(uri: str, meta: Any, access: ArtifactAccess, reason: str, words: str) -> None:
    with pytest.raises(ConchError) as refused:
        check(mv(uri), meta, access)
    assert refused.value.reason == reason
    assert words in refused.value.message
