"""Render the pydantic API models as CustomResourceDefinitions.

Pydantic emits JSON Schema 2020-12 with `$ref`s and `anyOf [X, null]` for optional fields; the
API server wants a *structural* OpenAPI v3.0 schema: every node typed, no references, no
null branches, booleans for exclusive bounds. `structural()` does that translation, so the
models stay the only place the API is written down.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel

from conch.api.catalogentry import CatalogEntrySpec
from conch.api.common import GROUP, VERSION
from conch.api.grant import ModelAccessGrantSpec
from conch.api.modelservice import ModelServiceSpec, ModelServiceStatus
from conch.api.modelversion import ModelVersionSpec, ModelVersionStatus

Schema = dict[str, Any]

_DROPPED_KEYS = {"title", "$defs"}


def _resolve(node: Any, defs: dict[str, Schema]) -> Any:
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        return _resolve({**target, **siblings}, defs)
    return {k: _resolve(v, defs) for k, v in node.items() if k not in _DROPPED_KEYS}


def _collapse_optional(node: Schema) -> Schema:
    """`anyOf: [X, {type: null}]` -> X merged with the node's own keywords."""
    branches = node.get("anyOf")
    if not branches:
        return node
    non_null = [b for b in branches if b != {"type": "null"}]
    if len(non_null) == len(branches) or len(non_null) != 1:
        return node
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    if rest.get("default", ...) is None:
        del rest["default"]
    merged = {**non_null[0], **rest}
    # Validations written on both the type and the field are both kept.
    rules = non_null[0].get("x-kubernetes-validations", []) + rest.get(
        "x-kubernetes-validations", []
    )
    if rules:
        merged["x-kubernetes-validations"] = rules
    return _collapse_optional(merged)


def _to_openapi_v3(node: Any) -> Any:
    if isinstance(node, list):
        return [_to_openapi_v3(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = _collapse_optional(dict(node))
    out: Schema = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties"):
            out[key] = {name: _to_openapi_v3(sub) for name, sub in value.items()}
        elif key == "additionalProperties":
            if isinstance(value, dict):
                out[key] = _to_openapi_v3(value)
            # `true` is implied by preserve-unknown-fields and `false` is not structural.
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "const":
            out["enum"] = [value]
        else:
            out[key] = _to_openapi_v3(value)
    if out.get("type") == "object" and not any(
        k in out for k in ("properties", "additionalProperties")
    ):
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def structural(model: type[BaseModel]) -> Schema:
    """The structural OpenAPI v3 schema of a pydantic model."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    return dict(_to_openapi_v3(_resolve(raw, defs)))


@dataclass(frozen=True)
class Resource:
    kind: str
    plural: str
    short_names: tuple[str, ...]
    spec: type[BaseModel]
    status: type[BaseModel] | None
    """None: the kind has no status (nothing writes one)."""
    description: str
    printer_columns: tuple[dict[str, str], ...]
    name_rule: tuple[str, str]
    """(CEL on metadata.name, message): what the names of the objects it becomes need."""
    scope: str = "Namespaced"
    scale: dict[str, str] | None = None
    """The scale subresource's paths, for a kind an HPA may scale."""

    @property
    def subresources(self) -> dict[str, Any]:
        status: dict[str, Any] = {"status": {}} if self.status else {}
        return {**status, **({"scale": dict(self.scale)} if self.scale else {})}

    @property
    def name(self) -> str:
        return f"{self.plural}.{GROUP}"


MODEL_VERSION = Resource(
    kind="ModelVersion",
    plural="modelversions",
    short_names=("mv",),
    spec=ModelVersionSpec,
    status=ModelVersionStatus,
    description="An immutable packaged model artifact that ModelServices serve.",
    name_rule=(
        "size(self.metadata.name) <= 63",
        "a ModelVersion name is at most 63 characters: it becomes a label value of the pods "
        "that serve it",
    ),
    printer_columns=(
        {"name": "Model", "type": "string", "jsonPath": ".spec.model"},
        {"name": "Version", "type": "string", "jsonPath": ".spec.version"},
        {"name": "Format", "type": "string", "jsonPath": ".spec.format"},
        {"name": "Size", "type": "integer", "jsonPath": ".spec.compression.sizeBytes"},
        {"name": "License", "type": "string", "jsonPath": ".spec.usage.license"},
        {
            "name": "Shared",
            "type": "string",
            "jsonPath": ".metadata.labels.serving\\.conch\\.dev/catalog",
        },
        {
            "name": "Accuracy",
            "type": "number",
            "jsonPath": ".spec.compression.accuracy",
            "priority": "1",
        },
        {"name": "Used-By", "type": "string", "jsonPath": ".status.usedBy", "priority": "1"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ),
)

MODEL_SERVICE = Resource(
    kind="ModelService",
    plural="modelservices",
    short_names=("msvc",),
    spec=ModelServiceSpec,
    status=ModelServiceStatus,
    description="A Triton inference endpoint serving a ModelVersion, with progressive rollout.",
    # The HPA scales the whole service; Conch splits the count between stable and canary.
    scale={
        "specReplicasPath": ".spec.autoscaling.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    },
    name_rule=(
        "size(self.metadata.name) <= 63 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
        "a ModelService name is a DNS label that starts with a letter (lowercase letters, digits "
        "and '-', at most 63, no dots): it names the Service and labels the pods it becomes",
    ),
    printer_columns=(
        {"name": "Version", "type": "string", "jsonPath": ".spec.modelVersion"},
        {"name": "Stable", "type": "string", "jsonPath": ".status.stable.version"},
        {"name": "Canary", "type": "string", "jsonPath": ".status.canary.version"},
        {"name": "Weight", "type": "integer", "jsonPath": ".status.canary.weight"},
        {
            "name": "Ready",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        },
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {
            "name": "Reason",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
            "priority": "1",
        },
        {
            "name": "Model-Namespace",
            "type": "string",
            "jsonPath": ".spec.modelNamespace",
            "priority": "1",
        },
        {
            "name": "Callers",
            "type": "string",
            "jsonPath": ".spec.access.allowedNamespaces",
            "priority": "1",
        },
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ),
)

MODEL_ACCESS_GRANT = Resource(
    kind="ModelAccessGrant",
    plural="modelaccessgrants",
    short_names=("mag",),
    spec=ModelAccessGrantSpec,
    status=None,
    description=(
        "Lets ModelServices of other namespaces serve ModelVersions of this namespace "
        "(ReferenceGrant-like: it lives beside what it shares)."
    ),
    name_rule=("size(self.metadata.name) <= 253", "a name is at most 253 characters"),
    printer_columns=(
        {"name": "Consumers", "type": "string", "jsonPath": ".spec.from[*].namespace"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ),
)

CATALOG_ENTRY = Resource(
    kind="CatalogEntry",
    plural="catalogentries",
    short_names=("ce",),
    spec=CatalogEntrySpec,
    status=None,
    description=(
        "The operator's read-only mirror of a ModelVersion its team shared "
        "(label serving.conch.dev/catalog=shared), readable by every team."
    ),
    name_rule=("size(self.metadata.name) <= 253", "a name is at most 253 characters"),
    printer_columns=(
        {"name": "Model", "type": "string", "jsonPath": ".spec.model"},
        {"name": "Version", "type": "string", "jsonPath": ".spec.version"},
        {"name": "Namespace", "type": "string", "jsonPath": ".spec.modelVersion.namespace"},
        {"name": "Format", "type": "string", "jsonPath": ".spec.format"},
        {"name": "Size", "type": "integer", "jsonPath": ".spec.sizeBytes"},
        {"name": "License", "type": "string", "jsonPath": ".spec.license"},
        {"name": "Accuracy", "type": "number", "jsonPath": ".spec.compression.accuracy"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ),
    scope="Cluster",
)

RESOURCES = (MODEL_VERSION, MODEL_SERVICE, MODEL_ACCESS_GRANT, CATALOG_ENTRY)


def _printer_column(column: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = dict(column)
    if "priority" in out:
        out["priority"] = int(out["priority"])
    return out


def crd(resource: Resource) -> dict[str, Any]:
    """The CustomResourceDefinition of one resource."""
    properties: dict[str, Any] = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": structural(resource.spec),
    }
    if resource.status is not None:
        properties["status"] = structural(resource.status)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": resource.name},
        "spec": {
            "group": GROUP,
            "scope": resource.scope,
            "names": {
                "kind": resource.kind,
                "listKind": f"{resource.kind}List",
                "plural": resource.plural,
                "singular": resource.kind.lower(),
                "shortNames": list(resource.short_names),
                "categories": ["conch"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": resource.subresources,
                    "additionalPrinterColumns": [
                        _printer_column(c) for c in resource.printer_columns
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": resource.description,
                            "required": ["spec"],
                            "x-kubernetes-validations": [
                                {"rule": resource.name_rule[0], "message": resource.name_rule[1]}
                            ],
                            "properties": properties,
                        }
                    },
                }
            ],
        },
    }


def render(resource: Resource) -> str:
    """The CRD as the YAML committed under crds/."""
    header = "# Generated by `conch crds` from conch.api; do not edit.\n"
    return header + yaml.safe_dump(crd(resource), sort_keys=False, width=100)


def files() -> dict[str, str]:
    """File name -> YAML for every CRD."""
    return {f"{GROUP}_{r.plural}.yaml": render(r) for r in RESOURCES}
