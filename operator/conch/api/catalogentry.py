"""CatalogEntry: the operator's cluster-scoped, read-only mirror of one shared ModelVersion.

Every team may list CatalogEntries (the chart binds get/list/watch to all authenticated
users), so discovering models needs no list right on anyone's ModelVersions. Only the
operator writes them: from ModelVersions labelled `serving.conch.dev/catalog=shared`,
named `<namespace>.<modelversion>` (namespaces hold no dots, so names cannot collide), and
removed when the label goes or the ModelVersion is deleted. An entry copies only what the
owner published, plus which ModelServices serve it (docs/catalog.md).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from conch.api.common import DNS_LABEL, DNS_SUBDOMAIN, ApiModel, ObjectMeta
from conch.api.modelversion import ModelFormat


class CatalogSource(ApiModel):
    """The ModelVersion an entry mirrors."""

    namespace: str = Field(max_length=63, pattern=DNS_LABEL)
    """Namespace of the ModelVersion (the publishing team's)."""
    name: str = Field(max_length=253, pattern=DNS_SUBDOMAIN)
    """Name of the ModelVersion; serve it with spec.modelNamespace + spec.modelVersion."""


class CatalogTerms(ApiModel):
    """The owner's terms document; consumers accept `sha256:<sha256>`."""

    uri: str = Field(max_length=2048)
    """Where the terms document is published."""
    sha256: str = Field(max_length=256)
    """Its digest: list `sha256:<this>` in a ModelService's spec.acceptTerms."""


class CatalogCompression(ApiModel):
    """What compression did, as the runtime recorded it on the ModelVersion."""

    quantization: str | None = Field(default=None, max_length=63)
    """Quantization applied (e.g. int8-dynamic)."""
    sparsity: float | None = None
    """Fraction of weights pruned to zero."""
    fp16: bool | None = None
    """Cast to half precision."""
    distilled_from: str | None = Field(default=None, max_length=253)
    """ModelVersion of the teacher."""
    accuracy: float | None = None
    """Recorded accuracy of this version."""
    baseline_accuracy: float | None = None
    """Recorded accuracy of the uncompressed baseline on the same data."""
    accuracy_metric: str | None = Field(default=None, max_length=63)
    """What accuracy measures (top1, or agreement with the baseline)."""


class Consumer(ApiModel):
    """A ModelService serving the version."""

    namespace: str = Field(max_length=63, pattern=DNS_LABEL)
    """Namespace of the ModelService."""
    service: str = Field(max_length=63)
    """Name of the ModelService."""


class CatalogEntrySpec(ApiModel):
    """What a team published about one ModelVersion, and who serves it. Written by the
    operator only."""

    model_version: CatalogSource
    model: str = Field(max_length=63)
    """Logical model name (the ModelVersion's spec.model)."""
    version: str = Field(max_length=63)
    """Version label (the ModelVersion's spec.version)."""
    format: ModelFormat
    """onnx, torchscript or python."""
    size_bytes: int | None = Field(default=None, ge=0)
    """Artifact size in bytes, as recorded."""
    compression: CatalogCompression | None = None
    """What compression did and the accuracy it recorded."""
    license: str | None = Field(default=None, max_length=128)
    """SPDX licence identifier."""
    terms: CatalogTerms | None = None
    purposes: list[str] = Field(default_factory=list, max_length=32)
    """Purposes the owner allows the model to be used for."""
    expires: datetime | None = None
    """After this time no ModelService may serve it."""
    served_by: list[Consumer] = Field(default_factory=list, max_length=1024)
    """ModelServices that serve it (its own namespace's, and granted ones elsewhere)."""


class CatalogEntry(ApiModel):
    api_version: str = "serving.conch.dev/v1alpha1"
    kind: str = "CatalogEntry"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: CatalogEntrySpec
