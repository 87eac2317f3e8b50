"""ModelAccessGrant: the owning team's consent that other namespaces serve its ModelVersions.

Like Gateway API's ReferenceGrant, it lives in the namespace of what is shared (the
ModelVersions), so only those who may write there can grant: a consumer cannot grant
itself. The operator only reads grants (get/list/watch).
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from conch.api.common import DNS_LABEL, DNS_SUBDOMAIN, ApiModel, ObjectMeta, cel, items, validations


class GrantConsumer(ApiModel):
    """Who may use the granted ModelVersions: ModelServices of one namespace."""

    namespace: str = Field(min_length=1, max_length=63, pattern=DNS_LABEL)
    """The consumer's namespace (a ModelService there sets spec.modelNamespace to this grant's namespace)."""
    service_names: list[str] = Field(
        default_factory=list,
        max_length=64,
        json_schema_extra=items(
            {"type": "string", "maxLength": 63, "pattern": DNS_LABEL},
            {"x-kubernetes-list-type": "set"},
        ),
    )
    """ModelServices of that namespace that may use them; empty: every ModelService there."""


class GrantTarget(ApiModel):
    """Which ModelVersions of this namespace: one by name, or every version of one model."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "has(self.modelVersion) != has(self.model)",
                "set exactly one of modelVersion (one ModelVersion) or model (all its versions)",
            ),
        )
    )

    model_version: str | None = Field(
        default=None, min_length=1, max_length=63, pattern=DNS_SUBDOMAIN
    )
    """A ModelVersion's name (metadata.name)."""
    model: str | None = Field(default=None, min_length=1, max_length=63, pattern=DNS_LABEL)
    """A logical model name (ModelVersion spec.model): every version of it, present or future."""


class ModelAccessGrantSpec(ApiModel):
    """Lets the listed consumers serve the listed ModelVersions of this namespace. Serving also needs the ModelVersion's spec.usage.allowedNamespaces to name the consumer's namespace (both parties agree), and the consumer to accept the version's terms."""

    from_: list[GrantConsumer] = Field(
        alias="from",
        min_length=1,
        max_length=64,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["namespace"],
        },
    )
    """The consumers."""
    to: list[GrantTarget] = Field(min_length=1, max_length=64)
    """The ModelVersions they may serve."""


class ModelAccessGrant(ApiModel):
    api_version: Literal["serving.conch.dev/v1alpha1"] = "serving.conch.dev/v1alpha1"
    kind: Literal["ModelAccessGrant"] = "ModelAccessGrant"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: ModelAccessGrantSpec
