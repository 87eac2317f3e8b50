"""ModelService: a served endpoint, and the rollout from one ModelVersion to the next."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field

from conch.api.common import (
    CONDITIONS_LIST,
    DNS_LABEL,
    DNS_SUBDOMAIN,
    ApiModel,
    Condition,
    Duration,
    LocalObjectReference,
    ObjectMeta,
    Quantity,
    cel,
    items,
    validations,
)

DEFAULT_TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:25.10-py3"
RESERVED_TRITON_FLAGS = (
    "--model-repository",
    "--model-store",
    "--http-port",
    "--grpc-port",
    "--metrics-port",
)


class Resources(ApiModel):
    """What one replica asks of a node."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.migProfile) || !has(self.gpuProduct)",
                "set either gpuProduct or migProfile, not both",
                ".migProfile",
            ),
            cel(
                "self.gpus > 0 || (!has(self.migProfile) && !has(self.gpuProduct))",
                "gpuProduct and migProfile need gpus of at least 1",
                ".gpus",
            ),
        )
    )

    gpus: int = Field(default=1, ge=0, le=16)
    """GPUs (or MIG slices, with migProfile) per replica; 0 serves on CPU."""
    gpu_product: str | None = Field(default=None, min_length=1, max_length=128)
    """Required GPU model, matched against the node label nvidia.com/gpu.product."""
    mig_profile: str | None = Field(
        default=None,
        max_length=32,
        json_schema_extra=validations(
            cel(
                "self.matches('^[0-9]+g\\\\.[0-9]+gb(\\\\+[a-z]+)?$')",
                "migProfile is a MIG profile such as 1g.10gb (resource nvidia.com/mig-1g.10gb)",
            )
        ),
    )
    """MIG profile; the replica then asks for nvidia.com/mig-<profile> instead of nvidia.com/gpu."""
    cpu: Quantity | None = None
    """CPU request per replica (the limit is left unset)."""
    memory: Quantity | None = None
    """Memory request and limit per replica."""


QUALIFIED_NAME = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
"""A label key as the Pod API checks it (CEL string): optional DNS-subdomain prefix, then a
name of at most 63 characters."""
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"


class Toleration(ApiModel):
    """A pod toleration (core/v1 Toleration), checked as the Pod API checks it."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                f"!has(self.key) || self.key.matches('{QUALIFIED_NAME}')",
                "key must be a label key such as nvidia.com/gpu (an optional DNS prefix and '/', "
                "then at most 63 letters, digits, '-', '_' or '.')",
                ".key",
            ),
            cel(
                "has(self.key) && self.key != '' || has(self.operator) && self.operator == 'Exists'",
                "a toleration without a key must have operator Exists",
                ".operator",
            ),
            cel(
                "!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''",
                "value must be empty when operator is Exists",
                ".value",
            ),
            cel(
                f"!has(self.value) || self.value.matches('{LABEL_VALUE}')",
                "value must be a label value: at most 63 letters, digits, '-', '_' or '.', "
                "starting and ending alphanumeric",
                ".value",
            ),
            cel(
                "!has(self.tolerationSeconds) || has(self.effect) && self.effect == 'NoExecute'",
                "tolerationSeconds needs effect NoExecute",
                ".tolerationSeconds",
            ),
        )
    )

    key: str | None = Field(default=None, max_length=316)
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = Field(default=None, max_length=63)
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = Field(default=None, ge=0)


class Scheduling(ApiModel):
    """Where replicas may run, beyond the GPU constraints Conch adds itself."""

    node_selector: dict[str, str] = Field(
        default_factory=dict,
        max_length=32,
        json_schema_extra={
            "additionalProperties": {"type": "string", "maxLength": 63},  # type: ignore[dict-item]
            **validations(
                cel(
                    f"self.all(k, size(k) <= 316 && k.matches('{QUALIFIED_NAME}'))",
                    "nodeSelector keys must be label keys such as nvidia.com/gpu.product",
                ),
                cel(
                    f"self.all(k, self[k].matches('{LABEL_VALUE}'))",
                    "nodeSelector values must be label values: at most 63 letters, digits, '-', "
                    "'_' or '.', starting and ending alphanumeric",
                ),
            ),
        },
    )
    tolerations: list[Toleration] = Field(default_factory=list, max_length=32)
    affinity: dict[str, Any] | None = Field(
        default=None,
        json_schema_extra={"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    )
    """A core/v1 Affinity, passed through to the pod unchanged."""
    priority_class_name: str | None = Field(default=None, max_length=253, pattern=DNS_SUBDOMAIN)


class DynamicBatching(ApiModel):
    """Triton dynamic batching: requests wait up to maxQueueDelayMicroseconds to be batched."""

    max_queue_delay_microseconds: int = Field(default=100, ge=0, le=10_000_000)
    preferred_batch_sizes: list[int] = Field(
        default_factory=list,
        max_length=16,
        json_schema_extra=items({"type": "integer", "minimum": 1}),
    )


class Triton(ApiModel):
    """The Triton Inference Server that serves the model."""

    image: str = Field(
        default=DEFAULT_TRITON_IMAGE,
        min_length=1,
        max_length=512,
        description=(
            "Triton image. NVIDIA's images serve onnx and torchscript ModelVersions but have no "
            "torch for the Python backend, so a python-format ModelVersion needs an image that "
            "has it: Conch builds one with its own recipe (`make images`: conch-triton-cpu, "
            "the sandbox's)."
        ),
    )
    dynamic_batching: DynamicBatching | None = None
    """Enable dynamic batching; unset keeps what the model's config.pbtxt says."""
    instance_count: int = Field(default=1, ge=1, le=64)
    """Model instances per replica (Triton instance_group count)."""
    extra_args: list[str] = Field(
        default_factory=list,
        max_length=64,
        json_schema_extra=items(
            {"type": "string", "maxLength": 256},
            validations(
                cel(
                    "self.all(a, "
                    + " && ".join(f"!a.startsWith('{flag}')" for flag in RESERVED_TRITON_FLAGS)
                    + ")",
                    "extraArgs must not set "
                    + ", ".join(RESERVED_TRITON_FLAGS)
                    + ": Conch manages them",
                )
            ),
        ),
    )
    """Extra tritonserver flags, e.g. --log-verbose=1."""


class Autoscaling(ApiModel):
    """Horizontal autoscaling of the serving replicas (an autoscaling/v2 HPA)."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.minReplicas <= self.maxReplicas",
                "minReplicas must not exceed maxReplicas",
                ".minReplicas",
            ),
            cel(
                "has(self.metric) && self.metric != 'cpu'"
                " || type(self.target) == int && self.target >= 1 && self.target <= 1000",
                "for metric cpu, target is a whole percentage of the CPU request, e.g. 70 "
                "(no % sign)",
                ".target",
            ),
            cel(
                "!has(self.metric) || self.metric != 'queueTime' || type(self.target) == int",
                "for metric queueTime, target is a plain number of microseconds, e.g. 500",
                ".target",
            ),
        )
    )

    min_replicas: int = Field(default=1, ge=1, le=1000)
    max_replicas: int = Field(ge=1, le=1000)
    replicas: int = Field(default=1, ge=1, le=1000)
    """Replicas in all, across the stable and canary versions: written by the HPA through the ModelService's scale subresource (leave it out of manifests, as with a Deployment's replicas under an HPA); Conch keeps it within minReplicas..maxReplicas and splits it by the rollout step's weight."""
    metric: Literal["cpu", "queueTime", "inferenceRate"] = "cpu"
    """cpu utilization, Triton queue time per request, or inferences per second per replica."""
    target: Quantity
    """Target per replica: percent for cpu, microseconds for queueTime, per second for inferenceRate."""


class CanaryStep(ApiModel):
    """Send `weight` percent of traffic to the new version, then analyse for `pause`."""

    weight: int = Field(ge=1, le=100)
    pause: Duration | None = None
    """How long to hold this step; unset holds for one analysis interval."""


class CustomCheck(ApiModel):
    """A user PromQL query; the step fails when its scalar result exceeds `max`."""

    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-zA-Z][a-zA-Z0-9_-]*$")
    query: str = Field(min_length=1, max_length=4096)
    """PromQL with {{namespace}}, {{service}}, {{version}} and {{interval}} placeholders."""
    max: float


class Analysis(ApiModel):
    """Metric checks run against the canary at every interval, from Triton's own series."""

    enabled: bool = True
    """false: no metrics are read; each step advances once its pause has passed (a timed canary), so the operator needs no metrics source."""
    interval: Duration = "30s"
    max_error_rate: float = Field(default=0.01, ge=0, le=1)
    """Highest share of failed inferences (nv_inference_request_failure / _request_success+failure)."""
    max_p99_latency_ms: float | None = Field(default=None, gt=0)
    """Highest p99 request latency in milliseconds."""
    max_queue_time_ms: float | None = Field(default=None, gt=0)
    """Highest mean queue time per request in milliseconds."""
    failure_limit: int = Field(default=2, ge=1, le=100)
    """Failed analyses in a row that trigger a rollback."""
    min_requests: int = Field(default=20, ge=0)
    """Requests the canary must have served in the interval before a verdict."""
    inconclusive_limit: int = Field(default=10, ge=1, le=1000)
    """Inconclusive analyses in a row at one step (too little traffic, no data) before the rollout stalls (spec.rollout.onStall)."""
    custom: list[CustomCheck] = Field(
        default_factory=list,
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )


class GatewayRef(ApiModel):
    """The Gateway API parent (a Gateway) the HTTPRoute attaches to."""

    name: str = Field(min_length=1, max_length=253)
    namespace: str | None = Field(default=None, max_length=63)
    section_name: str | None = Field(default=None, max_length=253)


class Rollout(ApiModel):
    """How a change of spec.modelVersion reaches users."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.steps) || self.steps.map(s, s.weight).isSorted()"
                " && self.steps.all(a, self.steps.exists_one(b, b.weight == a.weight))",
                "steps weights must be strictly increasing",
                ".steps",
            ),
            cel(
                "self.router != 'gatewayAPI' || has(self.gatewayRef)",
                "router gatewayAPI needs gatewayRef",
                ".gatewayRef",
            ),
        )
    )

    strategy: Literal["Canary", "Immediate"] = "Canary"
    """Canary moves traffic in steps with analysis; Immediate replaces the version at once."""
    steps: list[CanaryStep] | None = Field(default=None, min_length=1, max_length=20)
    """Canary steps; unset means 10%, 50%, then promotion."""
    analysis: Analysis = Field(default_factory=Analysis)
    router: Literal["replicas", "gatewayAPI"] = "replicas"
    """replicas: one Service over both versions, weight by replica ratio; gatewayAPI: HTTPRoute weights."""
    gateway_ref: GatewayRef | None = None
    max_extra_gpus: int | None = Field(default=None, ge=0, alias="maxExtraGPUs")
    """GPUs the canary may hold beyond the stable version's; unset is unlimited."""
    max_accuracy_drop: float | None = Field(default=None, ge=0, le=1)
    """Refuse to start a rollout to a version whose recorded accuracy drop exceeds this."""
    paused: bool = False
    """Hold the rollout at its current step."""
    progress_deadline: Duration = "1h"
    """Longest time without progress (the rollout starting, a step's canary becoming ready, an analysis passing, a resume) before the rollout stalls."""
    on_stall: Literal["Pause", "RollBack"] = "Pause"
    """What a stall (progressDeadline passed, inconclusiveLimit reached) does: Pause holds the step until a retry request; RollBack returns to the stable version."""


class PeerPods(ApiModel):
    """Pods allowed to call the endpoint: those matching `podSelector` in `namespace`."""

    namespace: str | None = Field(default=None, min_length=1, max_length=63, pattern=DNS_LABEL)
    """Namespace of the pods; unset: the ModelService's own."""
    pod_selector: dict[str, str] = Field(
        max_length=16,
        json_schema_extra=validations(
            cel(
                "self.all(k, size(k) <= 316 && size(self[k]) <= 63)",
                "podSelector is matchLabels: label keys and values of valid length",
            )
        ),
    )
    """Labels the calling pods carry (matchLabels; every one must match). `{}` selects every
    pod of the namespace."""


class Consumer(ApiModel):
    """A caller that gets its own endpoint key."""

    name: str = Field(min_length=1, max_length=63, pattern=DNS_LABEL)
    """The consumer's name (a DNS label): it names its key Secret and appears in the gate's
    Secret of hashes."""


class Access(ApiModel):
    """Who may reach the endpoint. Set, the serving pods get a default-deny NetworkPolicy
    that admits exactly these callers (plus the admin's metrics scrapers); unset, any pod
    may call the inference ports."""

    allowed_namespaces: list[str] = Field(
        default_factory=list,
        max_length=64,
        json_schema_extra=items(
            {"type": "string", "maxLength": 63, "pattern": DNS_LABEL},
            {"x-kubernetes-list-type": "set"},
        ),
    )
    """Namespaces whose every pod may call the inference ports (8000 HTTP, 8001 gRPC). Name
    your Gateway's namespace here for callers outside the cluster (docs/catalog.md)."""
    pods: list[PeerPods] = Field(default_factory=list, max_length=64)
    """Single pods by label, in this or another namespace."""
    consumers: list[Consumer] | None = Field(
        default=None,
        max_length=64,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """Callers that each get their own key: Conch writes a Secret per consumer in this
    namespace (label serving.conch.dev/consumer=NAME, entry `key`) and a gate in every
    serving pod refuses requests without a listed consumer's key in the
    `conch-endpoint-key` header (HTTP header or gRPC metadata), on every API but health.
    Removing a consumer revokes its key; annotate serving.conch.dev/rotate-keys=NAME (or
    `conch keys rotate`) to replace it. `[]`: the gate admits nobody (but keySecretRef)."""
    key_secret_ref: LocalObjectReference | None = None
    """A Secret in this namespace, written by you, whose `key` entry is also admitted by the
    gate (the one-key case: e.g. a key your Gateway adds after its own authentication).
    Rewrite the Secret to rotate it: the gate reloads it, the pods keep running."""


class ModelServiceSpec(ApiModel):
    """A served endpoint. Changing modelVersion starts a rollout."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!(has(self.replicas) && has(self.autoscaling))",
                "set replicas or autoscaling, not both",
                ".replicas",
            ),
        )
    )

    model_version: str = Field(min_length=1, max_length=63, pattern=DNS_SUBDOMAIN)
    """Name of the ModelVersion to serve (in modelNamespace)."""
    model_namespace: str | None = Field(
        default=None, min_length=1, max_length=63, pattern=DNS_LABEL
    )
    """Namespace of the ModelVersions this service serves; unset: its own. Another namespace needs that ModelVersion's usage.allowedNamespaces to name this one and a ModelAccessGrant there naming this service (else Ready=False, UsageNotGranted)."""
    accept_terms: list[str] = Field(
        default_factory=list,
        max_length=16,
        json_schema_extra=items(
            {"type": "string", "maxLength": 71},
            {"x-kubernetes-list-type": "set"},
            validations(
                cel(
                    "self.all(d, d.matches('^sha256:[a-f0-9]{64}$'))",
                    "acceptTerms entries are sha256:<64 lowercase hex>, the digest of a terms "
                    "document (ModelVersion spec.usage.terms.sha256)",
                )
            ),
        ),
    )
    """Digests (`sha256:<hex>`) of the terms documents this service's owner accepts; a ModelVersion with terms is served only when its digest is listed (else TermsNotAccepted)."""
    replicas: int | None = Field(default=None, ge=0, le=1000)
    """Fixed replica count when autoscaling is unset (default 1)."""
    resources: Resources = Field(default_factory=Resources)
    scheduling: Scheduling | None = None
    triton: Triton = Field(default_factory=Triton)
    autoscaling: Autoscaling | None = None
    rollout: Rollout = Field(default_factory=Rollout)
    access: Access | None = None
    """Who may call the endpoint (a NetworkPolicy); unset: any pod that reaches it."""


class VersionStatus(ApiModel):
    """One served version and the traffic it gets."""

    version: str = Field(max_length=253, pattern=DNS_SUBDOMAIN)
    """ModelVersion name (checked like spec.modelVersion: status is never trusted as input)."""
    replicas: int = 0
    ready_replicas: int = 0
    weight: int = Field(default=0, ge=0, le=100)


class AnalysisResult(ApiModel):
    """The outcome of one analysis run. Inconclusive is a value, not an error."""

    time: datetime
    verdict: Literal["Passed", "Failed", "Inconclusive"]
    requests: float | None = None
    error_rate: float | None = None
    p99_latency_ms: float | None = None
    queue_time_ms: float | None = None
    message: str = ""


class RolloutRecord(ApiModel):
    """One finished rollout."""

    from_version: str | None = Field(default=None, max_length=253, pattern=DNS_SUBDOMAIN)
    to_version: str = Field(max_length=253, pattern=DNS_SUBDOMAIN)
    result: Literal["Promoted", "RolledBack", "Aborted"]
    reason: str = ""
    started_at: datetime | None = None
    finished_at: datetime


class Endpoints(ApiModel):
    http: str | None = None
    grpc: str | None = None
    metrics: str | None = None


class AcceptedTerms(ApiModel):
    """Terms in force for what this service serves, and when it first accepted them."""

    model_version: str = Field(max_length=253, pattern=DNS_SUBDOMAIN)
    digest: str = Field(max_length=71)
    """sha256:<hex> of the terms document."""
    accepted_at: datetime
    """When the operator first saw this acceptance (serving under these terms began)."""


class ModelServiceStatus(ApiModel):
    conditions: list[Condition] = Field(default_factory=list, json_schema_extra=CONDITIONS_LIST)
    observed_generation: int | None = None
    replicas: int | None = None
    """Pods of every served version (the scale subresource's status.replicas)."""
    selector: str | None = Field(default=None, max_length=1024)
    """Label selector of every served version's pods: the HPA averages its metric over them."""
    stable: VersionStatus | None = None
    canary: VersionStatus | None = None
    phase: (
        Literal[
            "Pending", "Stable", "Progressing", "Paused", "Promoting", "RollingBack", "RolledBack"
        ]
        | None
    ) = None
    step: int | None = None
    """Index of the current canary step."""
    step_started_at: datetime | None = None
    """When the current step's weight took effect (its canary was ready); its pause counts from here."""
    rollout_started_at: datetime | None = None
    """When the rollout in progress (or the last one) began."""
    rollback_reason: str | None = None
    """Why the rollout is rolling back or was rolled back (AnalysisFailed, Aborted, ...)."""
    failed_analyses: int = 0
    """Failed analyses in a row at the current step."""
    inconclusive_analyses: int = 0
    """Inconclusive analyses in a row at the current step."""
    progressed_at: datetime | None = None
    """When the rollout last made progress; spec.rollout.progressDeadline counts from here."""
    stall_reason: str | None = None
    """Why the rollout is paused on its own (InconclusiveLimitReached, RolloutDeadlineExceeded)."""
    last_analysis: AnalysisResult | None = None
    endpoints: Endpoints | None = None
    accepted_terms: list[AcceptedTerms] = Field(
        default_factory=list,
        max_length=4,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["modelVersion"],
        },
    )
    """Terms accepted for the versions served (stable, canary)."""
    rollout_history: list[RolloutRecord] = Field(default_factory=list, max_length=20)


class ModelService(ApiModel):
    api_version: Literal["serving.conch.dev/v1alpha1"] = "serving.conch.dev/v1alpha1"
    kind: Literal["ModelService"] = "ModelService"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: ModelServiceSpec
    status: ModelServiceStatus | None = None
