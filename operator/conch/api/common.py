"""Types shared by both resources: the base model, conditions, quantities, durations.

Everything here renders to a structural OpenAPI v3 schema (see `conch.api.crd`), so the
JSON-schema overrides below are written in the dialect the API server speaks.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

GROUP = "serving.conch.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
SHA256_HEX = "^[a-f0-9]{64}$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


def cel(
    rule: str, message: str, field_path: str | None = None, message_expression: str | None = None
) -> JsonDict:
    """One `x-kubernetes-validations` entry; `field_path` makes the error name the field,
    `message_expression` (CEL) can echo the bad value, `message` stays the fallback."""
    entry: JsonDict = {"rule": rule, "message": message}
    if message_expression:
        entry["messageExpression"] = message_expression
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def validations(*rules: JsonDict) -> JsonDict:
    return {"x-kubernetes-validations": list(rules)}


def items(schema: JsonDict, *extras: JsonDict) -> JsonDict:
    """Schema extras for a list field: its items' schema plus list-level keywords."""
    merged: JsonDict = {"items": schema}
    for extra in extras:
        merged.update(extra)
    return merged


class ApiModel(BaseModel):
    """Base of every API type: camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        serialize_by_alias=True,
        use_attribute_docstrings=True,
    )


Quantity = Annotated[
    int | str,
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
            "x-kubernetes-validations": [
                cel(
                    "type(self) == int ? self > 0"
                    " : isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))",
                    "must be a positive quantity such as 2, 500m, 512Mi or 8Gi "
                    "(binary suffixes are Ki, Mi, Gi: write 8Gi, not 8GB)",
                )
            ],
        }
    ),
]
"""A Kubernetes resource quantity (`2`, `500m`, `16Gi`)."""

Duration = Annotated[
    str,
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": 32,
            "x-kubernetes-validations": [
                cel(
                    r"self.matches('^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$')"
                    " && duration(self) >= duration('1s') && duration(self) <= duration('24h')",
                    "must be a duration from 1s to 24h, such as 30s, 5m or 1h",
                )
            ],
        }
    ),
]
"""A Go-style duration string; CEL's `duration()` reads it."""


MESSAGE_MAX = 32768
"""Characters of a condition's message (metav1.Condition's limit)."""


class Condition(ApiModel):
    """The standard Kubernetes condition (metav1.Condition)."""

    type: str = Field(max_length=316)
    """Condition type: Ready, Progressing or Degraded."""
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(default="", max_length=1024)
    """Machine-readable CamelCase reason, stable across releases."""
    message: str = Field(default="", max_length=MESSAGE_MAX)
    """Human-readable detail."""
    last_transition_time: datetime | None = None
    observed_generation: int | None = Field(default=None, ge=0)


CONDITIONS_LIST: JsonDict = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}


class LocalObjectReference(ApiModel):
    """A reference to an object in the same namespace."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)


class ObjectMeta(ApiModel):
    """The part of metadata Conch reads."""

    name: str = ""
    namespace: str | None = None
    generation: int | None = None
    uid: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
