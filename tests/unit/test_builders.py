"""Pure builders against golden manifests, plus the properties every pod must have.

Regenerate the golden files after an intended change: `UPDATE_GOLDEN=1 pytest tests/unit`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from conch import builders, plan
from conch.api import ModelService, ModelVersion
from conch.builders import Capabilities, PodSettings, deployment, meta, pdb

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"


def example(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "examples" / name).read_text()))


def objects(
    svc_patch: dict[str, Any] | None = None, caps: Capabilities | None = None
) -> list[dict[str, Any]]:
    raw = example("modelservice.yaml")
    raw["metadata"] |= {"namespace": "ml", "uid": "1111-2222"}
    raw["spec"] |= svc_patch or {}
    mv_raw = example("modelversion.yaml")
    mv_raw["metadata"]["namespace"] = "ml"
    svc, mv = ModelService.model_validate(raw), ModelVersion.model_validate(mv_raw)
    return builders.single(svc, mv, PodSettings(), caps or Capabilities(service_monitor=True))


def by_kind(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in objs}


def test_golden_manifests() -> None:
    rendered = yaml.safe_dump_all(objects(), sort_keys=True)
    golden = GOLDEN / "digits.yaml"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(rendered)
    assert rendered == golden.read_text(), "builders changed: review, then UPDATE_GOLDEN=1"


def test_owned_kinds_and_owner_references() -> None:
    objs = objects()
    assert [o["kind"] for o in objs] == [
        "Service",
        "Deployment",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "HorizontalPodAutoscaler",
        "ServiceMonitor",
    ]
    for obj in objs:
        (owner,) = obj["metadata"]["ownerReferences"]
        assert owner == {
            "apiVersion": "serving.conch.dev/v1alpha1",
            "kind": "ModelService",
            "name": "digits",
            "uid": "1111-2222",
            "controller": True,
            "blockOwnerDeletion": True,
        }
        assert obj["metadata"]["labels"][meta.SERVICE_LABEL] == "digits"


def test_pod_passes_restricted_pod_security() -> None:
    pod = by_kind(objects())["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["containers"] + pod["initContainers"]:
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["readOnlyRootFilesystem"] is True
    assert pod["automountServiceAccountToken"] is False
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}} in pod["volumes"]


def test_triton_container() -> None:
    pod = by_kind(objects())["Deployment"]["spec"]["template"]["spec"]
    (triton,) = pod["containers"]
    assert "--model-repository=/models/repository" in triton["args"]
    assert {p["containerPort"] for p in triton["ports"]} == {8000, 8001, 8002}
    assert triton["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert triton["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert triton["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    (pull,) = pod["initContainers"]
    assert pull["args"][:5] == [
        "pull",
        "--uri",
        "https://models.example.com/digits/1.0.0/digits.tar",
        "--sha256",
        example("modelversion.yaml")["spec"]["source"]["sha256"],
    ]


@pytest.mark.parametrize(
    ("resources", "limits", "selector"),
    [
        ({"gpus": 0}, None, None),
        ({"gpus": 2}, {"nvidia.com/gpu": "2"}, None),
        ({"gpus": 1, "migProfile": "1g.5gb"}, {"nvidia.com/mig-1g.5gb": "1"}, None),
        (
            {"gpus": 1, "gpuProduct": "NVIDIA-L4", "memory": "8Gi"},
            {"nvidia.com/gpu": "1", "memory": "8Gi"},
            {"nvidia.com/gpu.product": "NVIDIA-L4"},
        ),
    ],
)
def test_accelerator_resources(
    resources: dict[str, Any], limits: dict[str, str] | None, selector: dict[str, str] | None
) -> None:
    pod = by_kind(objects({"resources": resources}))["Deployment"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"].get("limits") == limits
    assert pod.get("nodeSelector") == selector
    gpu_toleration = any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations", []))
    assert gpu_toleration == (resources["gpus"] > 0)


def test_the_hpa_scales_the_model_service_and_the_deployment_follows() -> None:
    autoscaled = by_kind(objects({"autoscaling": {"maxReplicas": 4, "replicas": 3, "target": 70}}))
    assert autoscaled["Deployment"]["spec"]["replicas"] == 3
    assert autoscaled["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"] == {
        "apiVersion": "serving.conch.dev/v1alpha1",
        "kind": "ModelService",
        "name": "digits",
    }
    fixed = by_kind(objects({"autoscaling": None, "replicas": 3}))
    assert fixed["Deployment"]["spec"]["replicas"] == 3
    assert "HorizontalPodAutoscaler" not in fixed


def test_service_monitor_only_with_the_crd() -> None:
    assert "ServiceMonitor" not in by_kind(objects(caps=Capabilities(service_monitor=False)))


def test_network_policy_admits_only_serving_and_metrics_ports() -> None:
    policy = by_kind(objects())["NetworkPolicy"]["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    assert sorted(p["port"] for p in rule["ports"]) == [8000, 8001, 8002]
    assert "from" not in rule


def test_user_scheduling_is_kept() -> None:
    scheduling = {
        "nodeSelector": {"zone": "a"},
        "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
        ],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        "priorityClassName": "serving",
    }
    pod = by_kind(objects({"scheduling": scheduling}))["Deployment"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"zone": "a", "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert pod["tolerations"][0]["key"] == "dedicated" and len(pod["tolerations"]) == 2
    assert pod["affinity"] == scheduling["affinity"]
    assert pod["priorityClassName"] == "serving"


def test_credentials_and_pvc_sources_are_mounted() -> None:
    raw = example("modelversion.yaml")
    raw["spec"]["source"] |= {
        "uri": "pvc://models/digits/1.tar",
        "credentialsSecretRef": {"name": "s3"},
    }
    raw["metadata"]["namespace"] = "ml"
    svc_raw = example("modelservice.yaml")
    svc_raw["metadata"] |= {"namespace": "ml", "uid": "u"}
    dep = deployment.build(
        ModelService.model_validate(svc_raw), ModelVersion.model_validate(raw), PodSettings(), 1
    )
    pod = dep["spec"]["template"]["spec"]
    (pull,) = pod["initContainers"]
    args = pull["args"]
    assert args[args.index("--pvc-root") + 1] == "/mnt/pvc"
    assert args[args.index("--credentials-dir") + 1] == "/var/run/secrets/conch/source"
    claims = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert claims == [
        {"name": "source", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}}
    ]
    assert {"name": "source", "mountPath": "/mnt/pvc/models", "readOnly": True} in pull[
        "volumeMounts"
    ]


def test_version_child_names_fit_and_never_collide() -> None:
    name = meta.version_child_name("digits", "digits-v1")
    assert name.startswith("digits-digits-v1-") and len(name) == len("digits-digits-v1") + 9
    # the plain join is ambiguous; the hash of the pair is not
    assert meta.version_child_name("a-b", "c") != meta.version_child_name("a", "b-c")
    long = meta.version_child_name("a" * 40, "b" * 200)
    assert len(long) == 63 and long == meta.version_child_name("a" * 40, "b" * 200)
    assert long != meta.version_child_name("a" * 40, "b" * 199 + "c")
    # dots (legal in ModelVersion names) never reach a Service name
    assert "." not in meta.version_child_name("svc", "digits.v1")


def test_stale_objects_are_those_no_longer_wanted() -> None:
    wanted = objects({"autoscaling": None})
    observed = [
        {"kind": "HorizontalPodAutoscaler", "metadata": {"name": "digits"}},
        {
            "kind": "Deployment",
            "metadata": {"name": meta.version_child_name("digits", "digits-v1")},
        },
        {
            "kind": "Deployment",
            "metadata": {"name": meta.version_child_name("digits", "digits-v0")},
        },
    ]
    assert [o["metadata"]["name"] for o in builders.stale(wanted, observed)] == [
        "digits",
        meta.version_child_name("digits", "digits-v0"),
    ]


def test_serving_settings_reach_the_pull_step() -> None:
    """instanceCount and dynamic batching are written into config.pbtxt by `conch pull`."""
    triton = {"instanceCount": 3, "dynamicBatching": {"maxQueueDelayMicroseconds": 500}}
    pod = by_kind(objects({"triton": triton, "resources": {"gpus": 0}}))["Deployment"]
    args = pod["spec"]["template"]["spec"]["initContainers"][0]["args"]
    assert args[args.index("--instance-count") + 1] == "3"
    assert args[args.index("--instance-kind") + 1] == "KIND_CPU"
    assert args[args.index("--max-queue-delay-us") + 1] == "500"
    assert "--preferred-batch-size" not in args


def test_the_recorded_artifact_size_bounds_the_download() -> None:
    pull = by_kind(objects())["Deployment"]["spec"]["template"]["spec"]["initContainers"][0]
    recorded = example("modelversion.yaml")["spec"]["compression"]["sizeBytes"]
    assert pull["args"][pull["args"].index("--max-bytes") + 1] == str(recorded)
    # unpacking may fill the model volume (at least its floor), not just twice the download
    unpacked = int(pull["args"][pull["args"].index("--max-unpacked-bytes") + 1])
    assert unpacked == deployment.model_volume_bytes(recorded, PodSettings().model_volume_factor)
    assert unpacked >= 4 * recorded


@pytest.mark.parametrize(
    ("size", "factor", "limit"),
    [
        (None, 3.0, None),  # no recorded size: no limit
        (1000, 3.0, "256Mi"),  # a tiny model still gets room for Triton's files
        (1024**3, 3.0, "3072Mi"),
        (1024**3 + 1, 2.0, "2049Mi"),  # rounded up, never down
        (1024**3, 0.0, None),  # factor 0 switches the limit off
    ],
)
def test_model_volume_limit(size: int | None, factor: float, limit: str | None) -> None:
    assert deployment.model_volume_limit(size, factor) == limit


def deployment_with(settings: PodSettings, size: int | None = 2 * 1024**3) -> dict[str, Any]:
    svc_raw = example("modelservice.yaml")
    svc_raw["metadata"] |= {"namespace": "ml", "uid": "1111-2222"}
    mv_raw = example("modelversion.yaml")
    mv_raw["metadata"]["namespace"] = "ml"
    mv_raw["spec"]["compression"]["sizeBytes"] = size
    svc, mv = ModelService.model_validate(svc_raw), ModelVersion.model_validate(mv_raw)
    return deployment.build(svc, mv, settings, replicas=2)


def test_platform_settings_reach_the_pod_and_conch_keeps_its_own() -> None:
    settings = PodSettings(
        service_account="model-reader",
        image_pull_secrets=("registry-a", "registry-b"),
        env={"AWS_REGION": "eu-west-1", "HOME": "/elsewhere"},
        labels={"team": "ml", meta.SERVICE_LABEL: "hijack"},
        annotations={"cost-center": "42", deployment.SHA256_ANNOTATION: "0" * 64},
        shm_size="4Gi",
        ephemeral_storage_request=True,
    )
    template = deployment_with(settings)["spec"]["template"]
    pod = template["spec"]
    assert pod["serviceAccountName"] == "model-reader"
    assert pod["automountServiceAccountToken"] is False  # cloud identity webhooks project their own
    assert pod["imagePullSecrets"] == [{"name": "registry-a"}, {"name": "registry-b"}]
    (triton,), (pull,) = pod["containers"], pod["initContainers"]
    assert triton["env"] == [
        {"name": "AWS_REGION", "value": "eu-west-1"},
        {"name": "HOME", "value": "/tmp"},
    ]
    assert pull["env"] == [
        {"name": "AWS_REGION", "value": "eu-west-1"},
        {"name": "HOME", "value": "/elsewhere"},
    ]
    labels, annotations = template["metadata"]["labels"], template["metadata"]["annotations"]
    assert labels["team"] == "ml" and labels[meta.SERVICE_LABEL] == "digits"
    assert annotations["cost-center"] == "42"
    assert annotations[deployment.SHA256_ANNOTATION] != "0" * 64
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "4Gi"}
    assert volumes["models"]["emptyDir"] == {"sizeLimit": "6144Mi"}
    assert triton["resources"]["requests"]["ephemeral-storage"] == "6144Mi"


def test_defaults_spread_replicas_and_add_nothing_else() -> None:
    pod = deployment_with(PodSettings(), size=None)["spec"]["template"]["spec"]
    assert "serviceAccountName" not in pod and "imagePullSecrets" not in pod
    assert {v["name"]: v for v in pod["volumes"]}["models"]["emptyDir"] == {}
    sized = deployment_with(PodSettings())["spec"]["template"]["spec"]
    assert {v["name"]: v for v in sized["volumes"]}["models"]["emptyDir"] == {"sizeLimit": "6144Mi"}
    assert "ephemeral-storage" not in sized["containers"][0]["resources"]["requests"]
    assert "env" not in pod["initContainers"][0]
    (spread,) = pod["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway"  # never leaves a replica pending
    labels = deployment_with(PodSettings())["spec"]["template"]["metadata"]["labels"]
    assert spread["labelSelector"]["matchLabels"].items() <= labels.items()
    off = deployment_with(PodSettings(topology_spread=False))["spec"]["template"]["spec"]
    assert "topologySpreadConstraints" not in off


@pytest.mark.parametrize(
    ("spec", "replicas"),
    [
        ({"autoscaling": None}, 1),
        ({"autoscaling": None, "replicas": 0}, 0),
        ({"autoscaling": None, "replicas": 5}, 5),
        ({"autoscaling": {"minReplicas": 2, "maxReplicas": 6, "target": 70}}, 2),  # default 1
        ({"autoscaling": {"minReplicas": 2, "maxReplicas": 6, "replicas": 4, "target": 70}}, 4),
        ({"autoscaling": {"minReplicas": 2, "maxReplicas": 6, "replicas": 9, "target": 70}}, 6),
    ],
)
def test_service_replicas_follow_the_autoscaler_within_its_bounds(
    spec: dict[str, Any], replicas: int
) -> None:
    raw = example("modelservice.yaml")
    raw["spec"] = {k: v for k, v in (raw["spec"] | spec).items() if v is not None}
    assert deployment.service_replicas(ModelService.model_validate(raw)) == replicas


def test_named_only_objects_depend_on_the_name_alone() -> None:
    """Before a write, `plan.named_only` objects are not dry-run (their names are read):
    nothing a user gives may reach them, or the API could refuse what was not checked."""
    user_input = {
        "replicas": 3,
        "autoscaling": None,
        "scheduling": {
            "nodeSelector": {"zone": "a"},
            "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": {"nodeAfinity": {}},
            "priorityClassName": "serving",
        },
        "resources": {"gpus": 0, "cpu": "7", "memory": "3Gi"},
    }
    access = {"allowedNamespaces": ["team-b"], "pods": [{"podSelector": {"app": "x"}}]}
    plain = by_kind(objects({"access": None}))
    rich = by_kind(objects(user_input | {"access": None}))
    named = {kind for kind, obj in plain.items() if plan.named_only(obj)}
    assert named == {"Service", "PodDisruptionBudget", "NetworkPolicy"}
    for kind in named:
        assert rich[kind] == plain[kind], kind
    assert rich["Deployment"] != plain["Deployment"]  # the spec did reach what is dry-run
    guarded = by_kind(objects(user_input | {"access": access}))
    assert not plan.named_only(guarded["NetworkPolicy"])  # the peers come from the spec


@pytest.mark.parametrize(
    ("spec", "versions", "budget"),
    [
        ({"replicas": 1, "autoscaling": None}, 1, False),  # one pod: maxUnavailable 1 is moot
        ({"replicas": None, "autoscaling": None}, 1, False),  # the default is one replica
        ({"replicas": 0, "autoscaling": None}, 1, False),
        ({"replicas": 2, "autoscaling": None}, 1, True),
        ({"replicas": 1, "autoscaling": None}, 2, True),  # a rollout runs two pods
        (
            {
                "autoscaling": {
                    "minReplicas": 1,
                    "maxReplicas": 1,
                    "metric": "queueTime",
                    "target": 500,
                }
            },
            1,
            False,
        ),
        (
            {
                "autoscaling": {
                    "minReplicas": 1,
                    "maxReplicas": 3,
                    "metric": "queueTime",
                    "target": 500,
                }
            },
            1,
            True,
        ),
    ],
)
def test_a_disruption_budget_only_where_more_than_one_pod_can_run(
    spec: dict[str, Any], versions: int, budget: bool
) -> None:
    raw = example("modelservice.yaml")
    raw["spec"] = {k: v for k, v in (raw["spec"] | spec).items() if v is not None}
    assert pdb.needed(ModelService.model_validate(raw), versions) is budget
    if versions == 1:
        assert ("PodDisruptionBudget" in by_kind(objects(spec))) is budget
