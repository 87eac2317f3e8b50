"""The serving-pod flags: what they accept becomes PodSettings, what a pod spec would
refuse is refused on the command line (a typo stops the operator, not every rollout)."""

from __future__ import annotations

import argparse

import pytest

from conch import podflags
from conch.artifacts import ArtifactAccess
from conch.builders import PodSettings
from conch.policy import PodPolicy


def parse(*flags: str) -> PodSettings:
    parser = argparse.ArgumentParser(exit_on_error=False)
    podflags.add_arguments(parser)
    args = parser.parse_args(list(flags))
    return podflags.pod_settings(args, PodSettings.runtime_image, PodPolicy(), ArtifactAccess())


def test_defaults_are_pod_settings_defaults() -> None:
    assert parse() == PodSettings()


def test_flags_become_settings() -> None:
    assert parse(
        "--serving-service-account=model-reader",
        "--serving-image-pull-secret=a",
        "--serving-image-pull-secret=b",
        "--serving-env=AWS_REGION=eu-west-1",
        "--serving-env=EMPTY=",
        "--serving-label=example.com/team=ml",
        "--serving-annotation=note=x=y",
        "--shm-size=512Mi",
        "--model-volume-factor=0",
        "--ephemeral-storage-request",
        "--no-topology-spread",
    ) == PodSettings(
        service_account="model-reader",
        image_pull_secrets=("a", "b"),
        env={"AWS_REGION": "eu-west-1", "EMPTY": ""},
        labels={"example.com/team": "ml"},
        annotations={"note": "x=y"},
        shm_size="512Mi",
        model_volume_factor=0.0,
        ephemeral_storage_request=True,
        topology_spread=False,
    )


@pytest.mark.parametrize(
    "flag",
    [
        "--serving-service-account=Not_Valid",
        "--serving-image-pull-secret=has space",
        "--serving-env=1BAD=x",
        "--serving-env=NOVALUE",
        "--serving-label=team=not valid",
        "--serving-label=-team=x",
        "--serving-annotation==x",
        "--shm-size=lots",
        "--model-volume-factor=-1",
        "--model-volume-factor=many",
    ],
)
def test_bad_flags_are_refused(flag: str) -> None:
    with pytest.raises((argparse.ArgumentError, SystemExit)):
        parse(flag)
