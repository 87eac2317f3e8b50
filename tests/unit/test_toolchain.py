"""The pins in versions.py and the wrapper go.mod agree, so an upgrade is one edit + regen."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from conch.dev import toolchain, versions


def _required(module: str) -> str:
    go_mod = (toolchain.WRAPPER_DIR / "go.mod").read_text()
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)} (v\S+)", go_mod, re.M)
    assert match, f"{module} not required in go.mod"
    return match.group(1)


def test_go_mod_matches_versions() -> None:
    assert _required("k8s.io/kubernetes") == versions.KUBERNETES
    assert _required("go.etcd.io/etcd/server/v3") == versions.ETCD


def test_staging_modules_replaced_with_matching_version() -> None:
    go_mod = (toolchain.WRAPPER_DIR / "go.mod").read_text()
    staging = "v0." + versions.KUBERNETES.split(".", 1)[1]
    replaced = re.findall(r"^\s*(k8s\.io/\S+) => \S+ (v\S+)$", go_mod, re.M)
    assert len(replaced) >= 25
    assert {v for _, v in replaced} == {staging}


def test_binary_names() -> None:
    assert toolchain._go_binary_name("go.etcd.io/etcd/server/v3") == "server"
    assert toolchain._go_binary_name("k8s.io/kubernetes/cmd/kubectl") == "kubectl"


def test_cache_key_covers_the_wrapper_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A changed pin (go.sum) must build into a new cache directory, never reuse the old."""
    before = toolchain.toolchain_key()
    assert re.fullmatch(r"[0-9a-f]{16}", before)
    copy = tmp_path / "toolchain"
    shutil.copytree(toolchain.WRAPPER_DIR, copy)
    monkeypatch.setattr(toolchain, "WRAPPER_DIR", copy)
    assert toolchain.toolchain_key() == before
    (copy / "go.sum").write_text((copy / "go.sum").read_text() + "example.com/x v1.0.0 h1:x=\n")
    assert toolchain.toolchain_key() != before
