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


def test_node_wrapper_pins_the_same_kubernetes() -> None:
    """kubelet must match the control plane: same k8s.io/kubernetes and staging replaces."""
    node_mod = (toolchain.NODE_WRAPPER_DIR / "go.mod").read_text()
    main_mod = (toolchain.WRAPPER_DIR / "go.mod").read_text()
    pin = re.search(r"^\s*(?:require\s+)?k8s\.io/kubernetes (v\S+)$", node_mod, re.M)
    assert pin and pin.group(1) == versions.KUBERNETES
    replace = re.compile(r"^\s*(k8s\.io/\S+ => \S+ v\S+)$", re.M)
    assert set(replace.findall(node_mod)) == set(replace.findall(main_mod))


def test_node_cache_key_is_apart_from_the_control_plane(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node pin change rebuilds the node only; the control plane's key stays."""
    from conch.dev import node_toolchain

    control, node = toolchain.toolchain_key(), node_toolchain.node_toolchain_key()
    monkeypatch.setattr(versions, "CONTAINERD", "v2.99.0")
    assert toolchain.toolchain_key() == control
    assert node_toolchain.node_toolchain_key() != node
    monkeypatch.undo()
    copy = tmp_path / "node"
    shutil.copytree(toolchain.NODE_WRAPPER_DIR, copy)
    monkeypatch.setattr(node_toolchain, "NODE_WRAPPER_DIR", copy)
    assert node_toolchain.node_toolchain_key() == node
    (copy / "go.sum").write_text((copy / "go.sum").read_text() + "example.com/x v1.0.0 h1:x=\n")
    assert node_toolchain.node_toolchain_key() != node
