"""The operator writes the init container's command line; the runtime's own parser reads it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from conch.api import ModelService, ModelVersion
from conch.builders import PodSettings, deployment
from conch_runtime import pull_contract
from conch_runtime.__main__ import _parser
from conch_runtime.errors import UnsupportedSource

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((EXAMPLES / name).read_text()))


def pull_container(uri: str) -> dict[str, Any]:
    mv = example("modelversion.yaml")
    mv["metadata"]["namespace"] = "ml"
    mv["spec"]["source"] |= {"uri": uri, "credentialsSecretRef": {"name": "s3"}}
    svc = example("modelservice.yaml")
    svc["metadata"] |= {"namespace": "ml", "uid": "u"}
    svc["spec"]["triton"] = {"dynamicBatching": {"preferredBatchSizes": [4, 8]}}
    dep = deployment.build(
        ModelService.model_validate(svc),
        ModelVersion.model_validate(mv),
        PodSettings(),
        1,
        credentials_hosts=("models.example.com",),
    )
    (pull,) = dep["spec"]["template"]["spec"]["initContainers"]
    return dict(pull)


def test_the_runtime_parses_what_the_operator_writes() -> None:
    pull = pull_container("pvc://models/digits/1.tar")
    assert pull["name"] == pull_contract.CONTAINER
    args = _parser().parse_args(pull["args"])
    assert args.command == pull_contract.COMMAND
    assert args.uri == "pvc://models/digits/1.tar"
    assert args.dest == Path(deployment.REPOSITORY)
    assert args.credentials_host == ["models.example.com"]
    assert args.preferred_batch_size == [4, 8]
    # the claim is mounted exactly where the pull looks for it
    mounts = {m["name"]: m["mountPath"] for m in pull["volumeMounts"]}
    assert Path(mounts["source"]) == args.pvc_root / "models"
    assert Path(mounts["credentials"]) == args.credentials_dir


@pytest.mark.parametrize(
    ("uri", "claim"),
    [
        ("pvc://models/digits/1.tar", "models"),
        ("pvc://team.models/a/b.tar", "team.models"),
        ("s3://bucket/key.tar", None),
        ("https://models.example.com/pvc://x/y.tar", None),
    ],
)
def test_pvc_claim(uri: str, claim: str | None) -> None:
    assert pull_contract.pvc_claim(uri) == claim


def test_a_malformed_pvc_uri_is_refused() -> None:
    with pytest.raises(UnsupportedSource):
        pull_contract.pvc_claim("pvc://Models/../etc/passwd")


def test_claim_mount() -> None:
    assert pull_contract.claim_mount("models") == "/mnt/pvc/models"
    assert pull_contract.claim_mount("models", "/data/") == "/data/models"
