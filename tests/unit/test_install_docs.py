"""The GitOps examples in docs/install.md install this chart: the path they name is the
chart, and the values they pass are valid against its values.schema.json."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts/conch"


def _documents() -> list[dict[str, Any]]:
    text = (ROOT / "docs/install.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    return [doc for block in blocks for doc in yaml.safe_load_all(block) if doc]


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Helm's merge of user values over the chart's defaults (maps merge, the rest replaces)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            out[key] = _merged(base[key], value)
        else:
            out[key] = value
    return out


def _gitops() -> list[tuple[str, str, dict[str, Any]]]:
    """(kind, chart path, values) of every Argo CD Application and Flux HelmRelease."""
    found = []
    for doc in _documents():
        spec = doc.get("spec", {})
        if doc.get("kind") == "Application":
            source = spec["source"]
            found.append(("Application", source["path"], source["helm"]["valuesObject"]))
        elif doc.get("kind") == "HelmRelease":
            found.append(("HelmRelease", spec["chart"]["spec"]["chart"], spec["values"]))
    return found


def test_docs_show_both_gitops_tools() -> None:
    assert {kind for kind, _, _ in _gitops()} == {"Application", "HelmRelease"}


@pytest.mark.parametrize(("kind", "path", "values"), _gitops())
def test_gitops_example_installs_this_chart(kind: str, path: str, values: dict[str, Any]) -> None:
    assert (ROOT / path).resolve() == CHART.resolve(), f"{kind} names {path}"
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.validate(_merged(defaults, values), schema)
    with pytest.raises(jsonschema.ValidationError):  # the schema does refuse what is wrong
        jsonschema.validate(_merged(defaults, values | {"metrics": {"sourc": {}}}), schema)
