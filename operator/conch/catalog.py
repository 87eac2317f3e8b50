"""The model catalog: which ModelVersions are shared, their mirror, and the rows
`conch catalog` prints. Pure: the controller and the command line do the I/O.

A ModelVersion is shared when it carries the label `serving.conch.dev/catalog=shared`; the
operator then keeps a cluster-scoped CatalogEntry `<namespace>.<name>` holding what its
owner published (docs/catalog.md says why a mirror and not a catalog namespace).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from conch.api import API_VERSION
from conch.api.catalogentry import CatalogEntrySpec
from conch.api.modelversion import CATALOG_LABEL as CATALOG_LABEL
from conch.api.modelversion import CATALOG_SHARED
from conch.builders.meta import MANAGED_BY, MANAGER, Manifest, label_value

SHARED = CATALOG_SHARED
SOURCE_NAMESPACE_LABEL = "serving.conch.dev/source-namespace"
MODEL_LABEL = "serving.conch.dev/model"


def entry_name(namespace: str, name: str) -> str:
    """`<namespace>.<name>`: namespaces are DNS labels (no dots), so the split is unique."""
    return f"{namespace}.{name}"


def is_shared(mv: Manifest) -> bool:
    return (mv["metadata"].get("labels") or {}).get(CATALOG_LABEL) == SHARED


def is_mirror(obj: Manifest) -> bool:
    """Whether a CatalogEntry is the operator's (the only kind it may rewrite or delete)."""
    return (obj["metadata"].get("labels") or {}).get(MANAGED_BY) == MANAGER


def _published(spec: dict[str, Any]) -> dict[str, Any]:
    """What the owner published in a ModelVersion spec, in CatalogEntry's terms."""
    compression = spec.get("compression") or {}
    usage = spec.get("usage") or {}
    copied = {
        k: compression[k]
        for k in (
            "quantization",
            "sparsity",
            "fp16",
            "distilledFrom",
            "accuracy",
            "baselineAccuracy",
            "accuracyMetric",
        )
        if compression.get(k) is not None
    }
    terms = usage.get("terms")
    return {
        "model": spec["model"],
        "version": spec["version"],
        "format": spec["format"],
        "sizeBytes": compression.get("sizeBytes"),
        "compression": copied or None,
        "license": usage.get("license"),
        "terms": {"uri": terms["uri"], "sha256": terms["sha256"]} if terms else None,
        "purposes": list(usage.get("purposes") or []),
        "expires": usage.get("expires"),
    }


def mirror(mv: Manifest, served_by: Iterable[tuple[str, str]]) -> Manifest:
    """The CatalogEntry of a shared ModelVersion; `served_by` is (namespace, service)."""
    meta = mv["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    spec = CatalogEntrySpec.model_validate(
        {
            "modelVersion": {"namespace": namespace, "name": name},
            **_published(mv["spec"]),
            "servedBy": [{"namespace": ns, "service": s} for ns, s in sorted(set(served_by))],
        }
    )
    return {
        "apiVersion": API_VERSION,
        "kind": "CatalogEntry",
        "metadata": {
            "name": entry_name(namespace, name),
            "labels": {
                MANAGED_BY: MANAGER,
                SOURCE_NAMESPACE_LABEL: namespace,
                MODEL_LABEL: label_value(mv["spec"]["model"]),
            },
        },
        "spec": spec.model_dump(mode="json", exclude_none=True),
    }


@dataclass(frozen=True)
class Row:
    """One line of `conch catalog`."""

    namespace: str
    name: str
    model: str
    version: str
    format: str
    size_bytes: int | None
    compression: str
    accuracy: float | None
    license: str
    terms: str
    served_by: tuple[str, ...]
    shared: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "modelVersion": self.name,
            "model": self.model,
            "version": self.version,
            "format": self.format,
            "sizeBytes": self.size_bytes,
            "compression": self.compression,
            "accuracy": self.accuracy,
            "license": self.license,
            "terms": self.terms,
            "servedBy": list(self.served_by),
            "shared": self.shared,
        }


def _compression_text(compression: dict[str, Any]) -> str:
    parts = []
    if (q := compression.get("quantization")) and q != "none":
        parts.append(str(q))
    if compression.get("sparsity"):
        parts.append(f"sparsity {compression['sparsity']:g}")
    if compression.get("fp16"):
        parts.append("fp16")
    if compression.get("distilledFrom"):
        parts.append(f"distilled from {compression['distilledFrom']}")
    return ", ".join(parts) or "none"


def _row(namespace: str, name: str, p: dict[str, Any], served: list[str], shared: bool) -> Row:
    terms = p.get("terms") or {}
    compression = p.get("compression") or {}
    return Row(
        namespace=namespace,
        name=name,
        model=p["model"],
        version=p["version"],
        format=p["format"],
        size_bytes=p.get("sizeBytes"),
        compression=_compression_text(compression),
        accuracy=compression.get("accuracy"),
        license=p.get("license") or "",
        terms=f"{terms['uri']} (sha256:{terms['sha256']})" if terms else "",
        served_by=tuple(sorted(served)),
        shared=shared,
    )


def rows(entries: list[Manifest], own: list[Manifest], namespace: str | None) -> list[Row]:
    """Shared entries plus the caller's namespace's own ModelVersions (private ones too),
    each version once, sorted by model, version and namespace."""
    out: dict[tuple[str, str], Row] = {}
    for entry in entries:
        spec = entry["spec"]
        src = spec["modelVersion"]
        served = [f"{c['namespace']}/{c['service']}" for c in spec.get("servedBy", [])]
        out[(src["namespace"], src["name"])] = _row(
            src["namespace"], src["name"], spec, served, shared=True
        )
    for mv in own:
        meta = mv["metadata"]
        key = (meta["namespace"], meta["name"])
        if key in out:
            continue
        used = (mv.get("status") or {}).get("usedBy") or []
        served = [f"{namespace}/{s}" for s in used]
        out[key] = _row(key[0], key[1], _published(mv["spec"]), served, is_shared(mv))
    return sorted(out.values(), key=lambda r: (r.model, r.version, r.namespace, r.name))
