"""The Deployment that runs Triton for one served ModelVersion.

An init container (the Conch runtime image) pulls the artifact, verifies its sha256 and
renames the model repository into place; Triton then serves it read-only. The pod passes
the `restricted` Pod Security level: non-root, no privilege escalation, no capabilities,
RuntimeDefault seccomp, a read-only root filesystem with emptyDirs where Triton writes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from conch import endpointkey
from conch.api import ModelService, ModelVersion
from conch.api.modelservice import Resources
from conch.artifacts import ArtifactAccess
from conch.builders.meta import Manifest, metadata, selector, version_child_name
from conch.builders.service import GRPC_PORT, HTTP_PORT, METRICS_PORT
from conch.policy import PodPolicy
from conch_runtime.pull_contract import COMMAND, CONTAINER, PVC_ROOT, Flag, claim_mount, pvc_claim

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
MODELS_DIR = "/models"
REPOSITORY = f"{MODELS_DIR}/repository"
CREDENTIALS_DIR = "/var/run/secrets/conch/source"
GATE_BINARY = "/usr/local/bin/conch-gate"
"""The gate in the runtime image (built from runtime/gate)."""
GATE_DIR = "/var/run/secrets/conch/gate"
OWNER_KEY_DIR = "/var/run/secrets/conch/owner-key"
LOOPBACK = "127.0.0.1"
SHA256_ANNOTATION = "serving.conch.dev/sha256"
TRITON_UID = 1000  # the `triton-server` user of NVIDIA's Triton images
MODEL_VOLUME_FLOOR = 256 * 1024 * 1024
"""The smallest model volume limit: room for Triton's own files beside a tiny model."""


@dataclass(frozen=True)
class PodSettings:
    """Operator-wide settings that shape serving pods (from the operator's command line)."""

    runtime_image: str = "ghcr.io/conch-serving/conch-runtime:0.1.0"
    shm_size: str = "1Gi"
    access: ArtifactAccess = field(default_factory=ArtifactAccess)
    policy: PodPolicy = field(default_factory=PodPolicy)
    """What a ModelService may put into its pods; the controller checks it before building."""
    service_account: str | None = None
    """The pods' ServiceAccount, e.g. one bound to a cloud identity (IRSA, Workload
    Identity) so the pull step reads artifacts through the SDK's ambient credentials."""
    image_pull_secrets: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    """Extra environment of both containers (proxies, AWS_REGION, ...); Conch's own wins."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """Extra pod labels (cost allocation, mesh opt-outs); Conch's own labels win."""
    annotations: Mapping[str, str] = field(default_factory=dict)
    """Extra pod annotations; Conch's own win."""
    model_volume_factor: float = 3.0
    """The model volume may hold this many times the ModelVersion's recorded artifact size
    (the download and its unpacked repository side by side, with room to spare)."""
    ephemeral_storage_request: bool = False
    """Request the model volume's limit as ephemeral-storage, so the scheduler only picks
    nodes with that much disk. Off by default: a node that reports no ephemeral-storage
    (virtual and simulated nodes) could then never take a serving pod."""
    topology_spread: bool = True
    """Spread a version's replicas across nodes (best effort: ScheduleAnyway)."""
    metrics_scrape_namespaces: tuple[str, ...] = ()
    """Namespaces (Prometheus's) that may scrape the metrics port of a service whose
    `spec.access` makes its NetworkPolicy default-deny."""


def model_volume_bytes(size_bytes: int | None, factor: float) -> int | None:
    """The model volume's limit in bytes from the artifact's recorded size; None when no
    size is recorded (then only the node bounds it)."""
    if size_bytes is None or factor <= 0:
        return None
    return max(MODEL_VOLUME_FLOOR, math.ceil(size_bytes * factor))


def model_volume_limit(size_bytes: int | None, factor: float) -> str | None:
    """The model emptyDir's size limit (a quantity in Mi, rounded up), see model_volume_bytes."""
    limit = model_volume_bytes(size_bytes, factor)
    return None if limit is None else f"{math.ceil(limit / 2**20)}Mi"


def _env(settings: PodSettings, own: list[dict[str, str]]) -> list[dict[str, str]]:
    """The admin's extra variables, then Conch's own (a later duplicate wins)."""
    names = {e["name"] for e in own}
    extra = [{"name": k, "value": v} for k, v in sorted(settings.env.items()) if k not in names]
    return extra + own


def name(svc: ModelService, mv_name: str) -> str:
    return version_child_name(svc.metadata.name, mv_name)


def accelerator_limits(resources: Resources) -> dict[str, str]:
    if resources.gpus == 0:
        return {}
    if resources.mig_profile:
        return {f"nvidia.com/mig-{resources.mig_profile}": str(resources.gpus)}
    return {GPU_RESOURCE: str(resources.gpus)}


def _resources(resources: Resources) -> dict[str, Any]:
    requests: dict[str, str] = {}
    limits = accelerator_limits(resources)
    if resources.cpu is not None:
        requests["cpu"] = str(resources.cpu)
    if resources.memory is not None:
        requests["memory"] = limits["memory"] = str(resources.memory)
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def _with_ephemeral(resources: dict[str, Any], volume_limit: str | None) -> dict[str, Any]:
    """Ask the scheduler for node disk to hold the model volume at its limit."""
    if volume_limit is None:
        return resources
    requests = {**resources.get("requests", {}), "ephemeral-storage": volume_limit}
    return {**resources, "requests": requests}


def _container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _source_mounts(
    mv: ModelVersion, settings: PodSettings, credentials_hosts: tuple[str, ...]
) -> tuple[list[str], list[dict[str, Any]], list[dict[str, Any]]]:
    """Extra pull arguments, volumes and mounts for where the artifact comes from.
    `credentials_hosts` are the places the operator checked the credentials may go."""
    access = settings.access
    args: list[str] = []
    if access.s3_endpoint:
        args += [Flag.S3_ENDPOINT, access.s3_endpoint]
    if access.allow_file and mv.spec.source.uri.startswith("file:"):
        args.append(Flag.ALLOW_FILE)
    if mv.spec.compression and mv.spec.compression.size_bytes:
        # The recorded size bounds the download exactly. Unpacking is bounded by what the
        # model volume holds and the pull's ratio cap, not by the pull's default of twice
        # the download: a small int8 package unpacks to about 4 times its archive.
        size = mv.spec.compression.size_bytes
        args += [Flag.MAX_BYTES, str(size)]
        unpacked = model_volume_bytes(size, settings.model_volume_factor)
        if unpacked is not None:
            args += [Flag.MAX_UNPACKED_BYTES, str(unpacked)]
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    if claim := pvc_claim(mv.spec.source.uri):
        volumes.append(
            {"name": "source", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        )
        mounts.append({"name": "source", "mountPath": claim_mount(claim), "readOnly": True})
        args += [Flag.PVC_ROOT, PVC_ROOT]
    if mv.spec.source.credentials_secret_ref:
        secret = mv.spec.source.credentials_secret_ref.name
        volumes.append(
            {"name": "credentials", "secret": {"secretName": secret, "defaultMode": 0o440}}
        )
        mounts.append({"name": "credentials", "mountPath": CREDENTIALS_DIR, "readOnly": True})
        args += [Flag.CREDENTIALS_DIR, CREDENTIALS_DIR]
        for host in credentials_hosts:
            args += [Flag.CREDENTIALS_HOST, host]
    return args, volumes, mounts


def _serving_overrides(svc: ModelService) -> list[str]:
    """How this service runs the model, written by the pull step into config.pbtxt."""
    triton = svc.spec.triton
    kind = "KIND_GPU" if svc.spec.resources.gpus > 0 else "KIND_CPU"
    args = [Flag.INSTANCE_COUNT, str(triton.instance_count), Flag.INSTANCE_KIND, kind]
    if triton.dynamic_batching is not None:
        batching = triton.dynamic_batching
        args += [Flag.MAX_QUEUE_DELAY_US, str(batching.max_queue_delay_microseconds)]
        for size in batching.preferred_batch_sizes:
            args += [Flag.PREFERRED_BATCH_SIZE, str(size)]
    return args


def _triton_args(svc: ModelService) -> list[str]:
    """With the gate, Triton listens on 127.0.0.1 only, behind it (the tenant cannot move
    it: the address flags are Conch's, `policy.MANAGED_TRITON_FLAGS`); metrics stay open."""
    if endpointkey.gate_on(svc):
        listen = [
            f"--http-address={LOOPBACK}",
            f"--http-port={endpointkey.TRITON_HTTP_PORT}",
            f"--grpc-address={LOOPBACK}",
            f"--grpc-port={endpointkey.TRITON_GRPC_PORT}",
            "--metrics-address=0.0.0.0",  # Triton's default is the HTTP address
        ]
    else:
        listen = [f"--http-port={HTTP_PORT}", f"--grpc-port={GRPC_PORT}"]
    return [
        "tritonserver",
        f"--model-repository={REPOSITORY}",
        *listen,
        f"--metrics-port={METRICS_PORT}",
        "--allow-metrics=true",
        "--strict-readiness=true",
        "--exit-on-error=true",
        "--metrics-config=summary_latencies=true",  # p99 latency for rollout analysis
        *svc.spec.triton.extra_args,
    ]


def _gate(svc: ModelService, settings: PodSettings) -> tuple[list[Any], list[Any]]:
    """The gate container and its volumes, when the service has consumers or an owner key:
    it takes the HTTP and gRPC ports and admits only callers with a key (`endpointkey`).
    Its volume holds hashes only; an owner key (keySecretRef) is mounted as the owner
    wrote it. Secret volumes are updated in place, so keys change without a restart."""
    if not endpointkey.gate_on(svc):
        return [], []
    args = [
        f"--http-listen=:{HTTP_PORT}",
        f"--http-upstream={LOOPBACK}:{endpointkey.TRITON_HTTP_PORT}",
        f"--grpc-listen=:{GRPC_PORT}",
        f"--grpc-upstream={LOOPBACK}:{endpointkey.TRITON_GRPC_PORT}",
        f"--hashes={GATE_DIR}/{endpointkey.HASHES_KEY}",
    ]
    mounts = [{"name": "gate-keys", "mountPath": GATE_DIR, "readOnly": True}]
    secret = {"secretName": endpointkey.gate_secret_name(svc.metadata.name), "defaultMode": 0o440}
    volumes: list[Any] = [{"name": "gate-keys", "secret": secret}]
    access = svc.spec.access
    if access and access.key_secret_ref:
        args.append(f"--key-file={OWNER_KEY_DIR}/{endpointkey.SECRET_KEY}")
        mounts.append({"name": "owner-key", "mountPath": OWNER_KEY_DIR, "readOnly": True})
        owner = {
            "secretName": access.key_secret_ref.name,
            "items": [{"key": endpointkey.SECRET_KEY, "path": endpointkey.SECRET_KEY}],
            "defaultMode": 0o440,
        }
        volumes.append({"name": "owner-key", "secret": owner})
    gate = {
        "name": "gate",
        "image": settings.runtime_image,
        "command": [GATE_BINARY],
        "args": args,
        "ports": [
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
        ],
        "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": _container_security(),
        "volumeMounts": mounts,
    }
    return [gate], volumes


def _probe(path: str, period: int, failures: int, port: int | str = "http") -> dict[str, Any]:
    """A probe of Triton's health; with the gate, through it (Triton listens on loopback)."""
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 2,
    }


def _tolerations(svc: ModelService) -> list[dict[str, Any]]:
    scheduling = svc.spec.scheduling
    user = [t.model_dump(exclude_none=True) for t in scheduling.tolerations] if scheduling else []
    if svc.spec.resources.gpus > 0 and not any(t.get("key") == GPU_RESOURCE for t in user):
        user.append({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
    return user


def _node_selector(svc: ModelService) -> dict[str, str]:
    scheduling = svc.spec.scheduling
    out = dict(scheduling.node_selector) if scheduling else {}
    if svc.spec.resources.gpu_product:
        out[GPU_PRODUCT_LABEL] = svc.spec.resources.gpu_product
    return out


def service_replicas(svc: ModelService) -> int:
    """Replicas of the service in all versions together: spec.replicas (default 1), or,
    when autoscaled, the count the HPA asks for through the scale subresource, kept within
    minReplicas..maxReplicas (someone else may write the field, e.g. `kubectl scale`)."""
    autoscaling = svc.spec.autoscaling
    if autoscaling is not None:
        return min(max(autoscaling.replicas, autoscaling.min_replicas), autoscaling.max_replicas)
    return 1 if svc.spec.replicas is None else svc.spec.replicas


def build(
    svc: ModelService,
    mv: ModelVersion,
    settings: PodSettings,
    replicas: int,
    credentials_hosts: tuple[str, ...] = (),
) -> Manifest:
    """The Deployment serving `mv` for `svc` with `replicas` (its share of the service's)."""
    source_args, source_volumes, source_mounts = _source_mounts(mv, settings, credentials_hosts)
    pod_labels = {**settings.labels, **metadata(svc, "", mv)["labels"]}
    size = mv.spec.compression.size_bytes if mv.spec.compression else None
    volume_limit = model_volume_limit(size, settings.model_volume_factor)
    pull = {
        "name": CONTAINER,
        "image": settings.runtime_image,
        "args": [
            COMMAND,
            Flag.URI,
            mv.spec.source.uri,
            Flag.SHA256,
            mv.spec.source.sha256,
            Flag.DEST,
            REPOSITORY,
            *source_args,
            *_serving_overrides(svc),
        ],
        "securityContext": _container_security(),
        **({"env": _env(settings, [])} if settings.env else {}),
        # its one-line error (`conch pull: Reason: message`) becomes the termination message
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [{"name": "models", "mountPath": MODELS_DIR}, *source_mounts],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
    }
    gate, gate_volumes = _gate(svc, settings)
    # the gate owns the http and grpc port names when it runs; probes then go through it
    ports = [("http", HTTP_PORT), ("grpc", GRPC_PORT)] if not gate else []
    probe_port: int | str = HTTP_PORT if gate else "http"
    triton = {
        "name": "triton",
        "image": svc.spec.triton.image,
        "args": _triton_args(svc),
        "ports": [
            {"name": name, "containerPort": port, "protocol": "TCP"}
            for name, port in [*ports, ("metrics", METRICS_PORT)]
        ],
        "env": _env(settings, [{"name": "HOME", "value": "/tmp"}]),
        "startupProbe": _probe("/v2/health/ready", 5, 120, probe_port),
        "readinessProbe": _probe("/v2/health/ready", 5, 3, probe_port),
        "livenessProbe": _probe("/v2/health/live", 10, 3, probe_port),
        "resources": _with_ephemeral(
            _resources(svc.spec.resources),
            volume_limit if settings.ephemeral_storage_request else None,
        ),
        "securityContext": _container_security(),
        "volumeMounts": [
            {"name": "models", "mountPath": MODELS_DIR, "readOnly": True},
            {"name": "dshm", "mountPath": "/dev/shm"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": TRITON_UID,
            "runAsGroup": TRITON_UID,
            "fsGroup": TRITON_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "initContainers": [pull],
        "containers": [triton, *gate],
        "volumes": [
            {
                "name": "models",
                "emptyDir": {"sizeLimit": volume_limit} if volume_limit else {},
            },
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": settings.shm_size}},
            {"name": "tmp", "emptyDir": {}},
            *source_volumes,
            *gate_volumes,
        ],
        "terminationGracePeriodSeconds": 30,
    }
    if settings.service_account:
        pod_spec["serviceAccountName"] = settings.service_account
    if settings.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": n} for n in settings.image_pull_secrets]
    if settings.topology_spread:
        pod_spec["topologySpreadConstraints"] = [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": selector(svc, mv.metadata.name)},
            }
        ]
    if tolerations := _tolerations(svc):
        pod_spec["tolerations"] = tolerations
    if node_selector := _node_selector(svc):
        pod_spec["nodeSelector"] = node_selector
    if svc.spec.scheduling and svc.spec.scheduling.affinity:
        pod_spec["affinity"] = svc.spec.scheduling.affinity
    if svc.spec.scheduling and svc.spec.scheduling.priority_class_name:
        pod_spec["priorityClassName"] = svc.spec.scheduling.priority_class_name

    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": selector(svc, mv.metadata.name)},
        "revisionHistoryLimit": 3,
        "progressDeadlineSeconds": 600,
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
        },
        "template": {
            "metadata": {
                "labels": pod_labels,
                "annotations": {
                    **settings.annotations,
                    SHA256_ANNOTATION: mv.spec.source.sha256,
                },
            },
            "spec": pod_spec,
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(
            svc,
            name(svc, mv.metadata.name),
            mv,
            annotations={SHA256_ANNOTATION: mv.spec.source.sha256},
        ),
        "spec": spec,
    }
