"""The images built without Docker (`conch dev images build`), run the way a node runs
them: unpacked by umoci and started by runc, with a read-only root, as the pod's user.

The images come from the cached builder, so a warm run reuses them. The Triton image serves
a `python`-format package made by `conch package`, with the exact arguments and user the
operator writes into the serving pod; the container keeps its own network namespace (only
its loopback), so the readiness check runs inside it with `runc exec`.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
import torch
import yaml

from conch.api import ModelService, ModelVersion
from conch.builders import Capabilities, PodSettings, deployment, single
from conch.dev import imagebuild, imagerun
from conch.dev.imagebuild import Built
from conch_runtime.package import PackageRequest, package
from tests.runtime.packaging import OUTPUT_NAMES, example, trained_teacher, validation

# A cold first build (Debian root, 2.7 GB of wheels, the Triton image) runs in the first
# test's setup: 6-12 minutes on 2 cores, past the suite's default 600 s.
pytestmark = pytest.mark.timeout(2400)

ROOT = Path(__file__).resolve().parents[2]
PYTHON = "/opt/conch/bin/python"
PROBE = "import sys, urllib.request as u; base = 'http://127.0.0.1:8000/v2/models/mlp'"
SIZE_GOALS = {"runtime": 150e6, "operator": 120e6}
"""Compressed size goals (bytes) of issue 9; the Triton image carries CUDA torch."""


@pytest.fixture(scope="module")
def built() -> dict[str, Built]:
    return {b.name: b for b in imagebuild.build()}


def serving_pod() -> dict[str, object]:
    """The pod spec the operator writes for the example ModelService, on CPU (as on the
    sandbox's real node: the pull step then writes KIND_CPU instances)."""
    svc = yaml.safe_load((ROOT / "examples" / "modelservice.yaml").read_text())
    svc["spec"]["resources"] = {"gpus": 0}
    mv = yaml.safe_load((ROOT / "examples" / "modelversion.yaml").read_text())
    for raw in (svc, mv):
        raw["metadata"] |= {"namespace": "ml", "uid": "1111-2222"}
    objs = single(
        ModelService.model_validate(svc),
        ModelVersion.model_validate(mv),
        PodSettings(),
        Capabilities(),
    )
    (dep,) = [o for o in objs if o["kind"] == "Deployment"]
    return dict(dep["spec"]["template"]["spec"])


def pod_user(pod: dict[str, object]) -> tuple[int, int]:
    context = pod["securityContext"]
    assert isinstance(context, dict)
    return int(context["runAsUser"]), int(context["runAsGroup"])


def test_archives_are_oci_with_digests_and_sizes(built: dict[str, Built]) -> None:
    for name, image in built.items():
        index = json.loads((Path(image.layout) / "index.json").read_text())
        (entry,) = index["manifests"]
        assert entry["digest"] == image.digest
        assert entry["annotations"]["io.containerd.image.name"] == image.reference
        assert Path(image.archive).stat().st_size >= image.compressed_bytes
        assert image.compressed_bytes <= SIZE_GOALS.get(name, 4e9), (name, image)


def test_runtime_image_runs_pull_as_the_pod_user(built: dict[str, Built]) -> None:
    pod = serving_pod()
    (pull,) = pod["initContainers"]  # type: ignore[misc]
    assert pull["args"][0] == "pull"
    code, out = imagerun.run(built["runtime"], ["pull", "--help"], user=pod_user(pod))
    assert code == 0, out
    assert "--sha256" in out and "--dest" in out


def test_operator_image_runs_the_operator(built: dict[str, Built]) -> None:
    code, out = imagerun.run(built["operator"], ["--help"])
    assert code == 0, out
    assert "usage: conch operator run" in out


def test_pulled_package_is_served_by_the_triton_image(
    built: dict[str, Built], tmp_path: Path
) -> None:
    """The serving pod's two containers in turn: the runtime image pulls and verifies the
    artifact into the models volume, then the Triton image serves what it wrote."""
    result = package(
        trained_teacher(),
        tmp_path / "pkg",
        PackageRequest(
            name="mlp",
            version="1.0.0",
            example=example(),
            output_names=OUTPUT_NAMES,
            validation=validation(),
        ),
    )
    pod = serving_pod()
    uid, gid = pod_user(pod)
    models = tmp_path / "models"  # the pod's emptyDir, writable by its fsGroup
    models.mkdir()
    os.chown(models, uid, gid)
    artifacts = tmp_path / "artifacts"  # where the pod's source is: readable by its user
    artifacts.mkdir(mode=0o755)
    shutil.copy(result.artifact, artifacts / result.artifact.name)
    (artifacts / result.artifact.name).chmod(0o644)
    (pull,) = pod["initContainers"]  # type: ignore[misc]
    args = list(pull["args"])
    args[args.index("--uri") + 1] = f"file:///artifacts/{result.artifact.name}"
    args[args.index("--sha256") + 1] = result.sha256
    code, out = imagerun.run(
        built["runtime"],
        [*args, "--allow-file"],
        user=(uid, gid),
        mounts=(
            imagerun.Mount(artifacts, "/artifacts"),
            imagerun.Mount(models, deployment.MODELS_DIR, readonly=False),
        ),
    )
    assert code == 0, out
    assert (models / "repository" / "mlp" / "config.pbtxt").is_file()

    (triton,) = pod["containers"]  # type: ignore[misc]
    mounts = (imagerun.Mount(models, deployment.MODELS_DIR),)
    container = imagerun.Container(
        built["triton"], args=list(triton["args"]), mounts=mounts, user=(uid, gid)
    )
    inputs = example()
    request = {
        "inputs": [
            {
                "name": "features",
                "datatype": "FP32",
                "shape": list(inputs["features"].shape),
                "data": inputs["features"].flatten().tolist(),
            },
            {
                "name": "category",
                "datatype": "INT64",
                "shape": list(inputs["category"].shape),
                "data": inputs["category"].flatten().tolist(),
            },
        ],
        "outputs": [{"name": "logits"}],
    }
    ready = f"{PROBE}; print(u.urlopen(base + '/ready', timeout=2).status)"
    infer = f"{PROBE}; print(u.urlopen(base + '/infer', data=sys.argv[1].encode()).read().decode())"
    with container:
        deadline = time.monotonic() + 120
        code, out = 1, ""
        while time.monotonic() < deadline and container.running():
            code, out = container.exec([PYTHON, "-c", ready])
            if code == 0:
                break
            time.sleep(0.5)
        assert code == 0 and out.strip() == "200", container.output()[-3000:]
        code, out = container.exec([PYTHON, "-c", infer, json.dumps(request)])
        assert code == 0, out
    (logits,) = json.loads(out)["outputs"]
    with torch.no_grad():
        expected = trained_teacher()(inputs["features"], inputs["category"])[0]
    served = torch.tensor(logits["data"]).reshape(logits["shape"])
    assert torch.allclose(served, expected, atol=1e-4), (served, expected)
