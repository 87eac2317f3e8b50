"""A node that fails half way up (containerd running, the bridge made, kubelet dead at
once) comes down to nothing: the failed `start` cleans up after itself."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

import pytest

from conch.dev import hoststate, nodelock
from conch.dev.cluster import Cluster, FakeNode
from conch.dev.node import BRIDGE
from conch.dev.node_toolchain import NodeToolchain, ensure_node_toolchain
from conch.dev.toolchain import Toolchain


def test_a_half_started_node_leaves_nothing_behind(toolchain: Toolchain, tmp_path: Path) -> None:
    built = ensure_node_toolchain()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for binary in built.bin_dir.iterdir():
        (bin_dir / binary.name).symlink_to(binary)
    (bin_dir / "kubelet").unlink()
    (bin_dir / "kubelet").write_text("#!/bin/sh\necho 'kubelet: refusing to start' >&2\nexit 1\n")
    (bin_dir / "kubelet").chmod(0o755)
    broken = dataclasses.replace(built, bin_dir=bin_dir)
    # containerd's sockets live in the cluster directory: keep it short (xdist's tmp_path
    # is too deep for a unix socket path)
    short = Path(tempfile.mkdtemp(prefix="conch-hs-", dir="/tmp"))
    try:
        _start_and_fail(toolchain, broken, Cluster(short / "cluster"))
    finally:
        shutil.rmtree(short, ignore_errors=True)


def _start_and_fail(toolchain: Toolchain, broken: NodeToolchain, cluster: Cluster) -> None:
    with nodelock.acquire():
        before = hoststate.snapshot()
        with pytest.raises(TimeoutError, match="kubelet exited"):
            cluster.start(
                toolchain, nodes=(FakeNode("cpu-0"),), real_node=True, node_toolchain=broken
            )
        after = hoststate.snapshot()
    assert hoststate.processes_mentioning(str(cluster.directory)) == {}
    assert not cluster.directory.exists()
    ours = {n for n in after.link_names ^ before.link_names if n == BRIDGE or n.startswith("veth")}
    assert ours == set()
    assert after.kubepods == before.kubepods
    assert after.fixed_paths == before.fixed_paths
    assert after.sysctls == before.sysctls
    assert {
        m for m in after.mount_points - before.mount_points if str(cluster.directory) in m
    } == set()
