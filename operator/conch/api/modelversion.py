"""ModelVersion: one immutable, packaged model artifact."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field
from pydantic.config import JsonDict

from conch.api.common import (
    CONDITIONS_LIST,
    DNS_LABEL,
    SHA256_HEX,
    ApiModel,
    Condition,
    LocalObjectReference,
    ObjectMeta,
    cel,
    items,
    validations,
)

ModelFormat = Literal["onnx", "torchscript", "python"]

TritonDataType = Literal[
    "TYPE_BOOL",
    "TYPE_UINT8",
    "TYPE_UINT16",
    "TYPE_UINT32",
    "TYPE_UINT64",
    "TYPE_INT8",
    "TYPE_INT16",
    "TYPE_INT32",
    "TYPE_INT64",
    "TYPE_FP16",
    "TYPE_FP32",
    "TYPE_FP64",
    "TYPE_BF16",
    "TYPE_STRING",
]

URI_SCHEMES = r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+|https?://[^\\s/]+/.+|pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?/.+|file:///.+)$"


class ArtifactSource(ApiModel):
    """Where the packaged artifact (a tar archive of a Triton model repository) lives."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!self.uri.matches('^[A-Za-z0-9+.-]+://[^/]*@')",
                "uri must not carry credentials (user:password@): put them in a Secret and name "
                "it in credentialsSecretRef",
                ".uri",
            ),
            cel(
                f"self.uri.matches('^[A-Za-z0-9+.-]+://[^/]*@') || self.uri.matches('{URI_SCHEMES}')",
                "uri must be s3://BUCKET/KEY, http(s)://HOST/PATH, pvc://CLAIM/PATH or file:///PATH",
                ".uri",
                message_expression="'uri must be s3://BUCKET/KEY, http(s)://HOST/PATH, "
                "pvc://CLAIM/PATH or file:///PATH, got ' + self.uri",
            ),
            cel(
                "!self.uri.contains('/../') && !self.uri.endsWith('/..')",
                "uri must not contain '..' path segments",
                ".uri",
            ),
        )
    )

    uri: str = Field(min_length=1, max_length=2048)
    """Artifact location: s3://, http(s)://, pvc://CLAIM/PATH, or file:/// for local use."""
    sha256: str = Field(
        max_length=256,  # long enough that the rule's message, not a length error, is shown
        json_schema_extra=validations(
            cel(
                "self.matches('^[a-f0-9]{64}$')",
                "sha256 must be 64 lowercase hexadecimal characters, without a sha256: prefix",
                message_expression="self.startsWith('sha256:') ? 'sha256 must be the 64 hexadecimal "
                "characters alone: drop the sha256: prefix' : 'sha256 must be 64 lowercase "
                "hexadecimal characters, got ' + self",
            )
        ),
    )
    """sha256 of the artifact; pulls that do not match are refused before unpacking."""
    credentials_secret_ref: LocalObjectReference | None = None
    """Secret holding credentials for the source (S3 keys or an HTTP bearer token)."""


class TensorSpec(ApiModel):
    """One named input or output tensor, in Triton's terms."""

    name: str = Field(
        min_length=1,
        max_length=128,
        json_schema_extra=validations(
            cel(
                "self.matches('^[A-Za-z_][A-Za-z0-9_.:-]*$')",
                "tensor names start with a letter or underscore and hold letters, digits, _ . : -",
            )
        ),
    )
    data_type: TritonDataType
    """Triton data type, e.g. TYPE_FP32."""
    dims: list[int] = Field(
        min_length=1,
        max_length=8,
        json_schema_extra=items(
            {"type": "integer", "minimum": -1},
            validations(cel("self.all(d, d != 0)", "dims must be positive, or -1 for variable")),
        ),
    )
    """Shape without the batch dimension; -1 marks a variable dimension."""


TENSOR_LIST: JsonDict = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["name"],
}


class Signature(ApiModel):
    """The model's interface as Triton serves it."""

    inputs: list[TensorSpec] = Field(min_length=1, max_length=64, json_schema_extra=TENSOR_LIST)
    outputs: list[TensorSpec] = Field(min_length=1, max_length=64, json_schema_extra=TENSOR_LIST)
    max_batch_size: int = Field(default=0, ge=0, le=65536)
    """Largest batch Triton may form; 0 disables batching."""


class Latency(ApiModel):
    """Measured latency of the packaged model file, so the catalog and the rollout can show
    what a version costs to serve. Median of repeated calls in one process, one batch at a
    time; compare versions by the ratio to the baseline measured in the same run."""

    device: Literal["cpu", "gpu"]
    """Where it was measured."""
    threads: int = Field(ge=1, le=1024)
    """Intra-op threads the model ran with."""
    batch1_ms: float = Field(ge=0)
    """Median milliseconds of one call with a batch of one sample."""
    max_batch: int = Field(ge=1, le=65536)
    """The batch size of maxBatchMs: the signature's maxBatchSize (1 when batching is off)."""
    max_batch_ms: float = Field(ge=0)
    """Median milliseconds of one call with a batch of maxBatch samples."""
    baseline_batch1_ms: float | None = Field(default=None, ge=0)
    """The same for the uncompressed model, measured in the same run."""
    baseline_max_batch_ms: float | None = Field(default=None, ge=0)


class Compression(ApiModel):
    """What the runtime did to the trained model, and what it measured. Read by the rollout gate."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.accuracy) || has(self.baselineAccuracy)",
                "accuracy needs baselineAccuracy to compare against",
                ".baselineAccuracy",
            ),
        )
    )

    quantization: Literal["int8-static", "int8-dynamic", "none"] | None = None
    """int8-static (calibrated activation scales), int8-dynamic (per-sample scales) or none."""
    sparsity: float | None = Field(default=None, ge=0, le=1)
    """Fraction of weights pruned to zero (magnitude pruning, made permanent)."""
    fp16: bool | None = None
    """Weights and activations cast to half precision."""
    distilled_from: str | None = Field(default=None, max_length=253)
    """ModelVersion of the teacher this student was distilled from."""
    baseline_version: str | None = Field(default=None, max_length=253)
    """ModelVersion of the uncompressed model the measurements compare against."""
    baseline_accuracy: float | None = Field(default=None, ge=0, le=1)
    accuracy: float | None = Field(default=None, ge=0, le=1)
    """Accuracy of this version on the same validation data as baselineAccuracy."""
    accuracy_metric: (
        Literal["top1", "top1-agreement-with-baseline", "outputs-agreement-with-baseline"] | None
    ) = None
    """What accuracy is: top-1 on labels, or share agreeing with the baseline (then 1.0)."""
    size_bytes: int | None = Field(default=None, ge=0)
    """Size of the artifact in bytes."""
    latency: Latency | None = None
    """Measured latency of this version (and of the baseline) at batch 1 and max batch."""


CATALOG_LABEL = "serving.conch.dev/catalog"
"""Label on a ModelVersion: `shared` lists it in the catalog every team sees; absent, it is
private. A label, not spec, so a team publishes or unpublishes without a new version."""
CATALOG_SHARED = "shared"

SPDX_ID = r"^(LicenseRef-)?[A-Za-z0-9][A-Za-z0-9.+-]*$"


class Terms(ApiModel):
    """The terms-of-use document consumers accept, pinned by its digest."""

    uri: str = Field(
        min_length=1,
        max_length=2048,
        json_schema_extra=validations(
            cel(
                r"self.matches('^https://[^/@\\s?#]+([/?#][^\\s]*)?$')",
                "terms uri must be https://HOST/PATH, without user:password@",
                message_expression="'terms uri must be https://HOST/PATH, without "
                "user:password@, got ' + self",
            )
        ),
    )
    """Where the terms document is published (https only)."""
    sha256: str = Field(
        max_length=256,
        json_schema_extra=validations(
            cel(
                f"self.matches('{SHA256_HEX}')",
                "terms sha256 must be 64 lowercase hexadecimal characters, without a sha256: "
                "prefix",
            )
        ),
    )
    """sha256 of the terms document. Consumers accept `sha256:<this>` in spec.acceptTerms."""


class DataRights(ApiModel):
    """What may be done with the data sent to the model (its inputs) and what it returns."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!self.logRequests || self.retain",
                "logRequests needs retain: logged inputs and outputs are retained data",
                ".logRequests",
            ),
            cel(
                "!has(self.retention) || self.retain",
                "retention needs retain: true",
                ".retention",
            ),
        )
    )

    log_requests: bool = False
    """Whether inputs and outputs may be logged or traced. false: Conch refuses a ModelService whose Triton flags log or trace requests (--log-verbose, --trace-*)."""
    retain: bool = False
    """Whether inputs and outputs may be kept after the request is answered."""
    retention: str | None = Field(
        default=None,
        max_length=16,
        json_schema_extra=validations(
            cel(
                "self.matches('^[0-9]{1,6}h$') && duration(self) >= duration('1h')",
                "retention is a whole number of hours, such as 24h or 720h (30 days)",
            )
        ),
    )
    """How long retained data may be kept, in hours (e.g. 720h); unset: as long as needed."""


class Usage(ApiModel):
    """Terms of use: who may serve this version, and on what terms. Enforced by the operator for every ModelService that serves it (docs/catalog.md)."""

    license: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        json_schema_extra=validations(
            cel(
                f"self.matches('{SPDX_ID}')",
                "license must be an SPDX licence identifier such as Apache-2.0, MIT or "
                "LicenseRef-Acme-Internal",
            )
        ),
    )
    """SPDX licence identifier of the model (e.g. Apache-2.0, or LicenseRef-<name>)."""
    terms: Terms | None = None
    """A terms document; when set, every ModelService that serves this version must list `sha256:<terms.sha256>` in spec.acceptTerms."""
    purposes: list[str] = Field(
        default_factory=list,
        max_length=32,
        json_schema_extra=items(
            {"type": "string", "maxLength": 63, "pattern": DNS_LABEL},
            {"x-kubernetes-list-type": "set"},
        ),
    )
    """Purposes the model may be used for (short lowercase words, e.g. research, internal-support). Informational: shown in the catalog."""
    data: DataRights = Field(default_factory=DataRights)
    allowed_namespaces: list[str] = Field(
        default_factory=list,
        max_length=256,
        json_schema_extra=items(
            {"type": "string", "maxLength": 63, "pattern": DNS_LABEL},
            {"x-kubernetes-list-type": "set"},
        ),
    )
    """Namespaces whose ModelServices may serve this version; empty: only its own. A namespace listed here also needs a ModelAccessGrant in this namespace naming it."""
    expires: datetime | None = None
    """RFC 3339 time after which no ModelService may serve it (running ones scale to zero)."""


class ModelVersionSpec(ApiModel):
    """An immutable packaged model. A new model is a new ModelVersion."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("self == oldSelf", "spec is immutable: create a new ModelVersion instead"),
        )
    )

    model: str = Field(min_length=1, max_length=63, pattern=DNS_LABEL)
    """Logical model name, the catalog key (e.g. `digits`)."""
    version: str = Field(
        min_length=1,
        max_length=63,
        json_schema_extra=validations(
            cel(
                "self.matches('^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$')",
                "version is letters, digits, '.', '_' or '-', starting and ending alphanumeric",
            )
        ),
    )
    """Version label (e.g. `1.2.0` or `2026-11-23-int8`)."""
    format: ModelFormat
    """onnx (onnxruntime_onnx), torchscript (pytorch_libtorch) or python (Python backend)."""
    source: ArtifactSource
    signature: Signature
    compression: Compression | None = None
    usage: Usage | None = None
    """Terms of use; unset: only ModelServices in this namespace serve it, on no terms."""


class ModelVersionStatus(ApiModel):
    conditions: list[Condition] = Field(default_factory=list, json_schema_extra=CONDITIONS_LIST)
    observed_generation: int | None = None
    used_by: list[str] = Field(default_factory=list)
    """ModelServices that serve this version."""


class ModelVersion(ApiModel):
    api_version: Literal["serving.conch.dev/v1alpha1"] = "serving.conch.dev/v1alpha1"
    kind: Literal["ModelVersion"] = "ModelVersion"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: ModelVersionSpec
    status: ModelVersionStatus | None = None
