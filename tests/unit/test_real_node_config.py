"""The real node's pure decisions: its subnet, what may be dialled, and the settings these
VMs need (a wrong key here is a node that silently uses /var/lib or a negative oom score)."""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path

import pytest

from conch.dev import netplan, nodeconfig
from conch.dev.hoststate import parse_mountinfo
from conch.dev.imagestore import archive_images

NET = ipaddress.IPv4Network


@pytest.mark.parametrize(
    ("taken", "expected"),
    [
        ([], "10.213.0.0/24"),
        ([NET("0.0.0.0/0"), NET("127.0.0.0/8")], "10.213.0.0/24"),
        ([NET("10.213.0.0/24"), NET("10.213.1.7/32")], "10.213.2.0/24"),
        ([NET("10.0.0.0/8")], None),
    ],
)
def test_pick_subnet_avoids_every_route(taken: list[NET], expected: str | None) -> None:
    if expected is None:
        with pytest.raises(RuntimeError, match="no free /24"):
            netplan.pick_subnet(taken)
    else:
        assert netplan.pick_subnet(taken) == NET(expected)


def test_routed_networks_reads_ip_json() -> None:
    routes = [{"dst": "default"}, {"dst": "10.1.2.0/24"}, {"dst": "127.0.0.1", "type": "local"}]
    assert netplan.routed_networks(routes) == [NET("10.1.2.0/24"), NET("127.0.0.1/32")]


@pytest.mark.parametrize(
    ("ip", "ok"),
    [
        ("10.213.0.5", True),
        ("10.213.0.1", False),  # the host's own bridge address
        ("10.213.0.255", False),
        ("10.213.1.5", False),
        ("127.1.0.3", False),  # a kwok pod address: nothing listens there
        ("192.168.1.10", False),
    ],
)
def test_only_pod_addresses_on_the_bridge_are_dialable(ip: str, ok: bool) -> None:
    subnet = NET("10.213.0.0/24")
    if ok:
        assert netplan.dialable_pod_ip(ip, subnet) == ip
    else:
        with pytest.raises(ValueError, match="not a pod address"):
            netplan.dialable_pod_ip(ip, subnet)


def test_cni_network_has_no_gateway_masquerade_or_routes() -> None:
    conf = netplan.cni_conflist("conch0", NET("10.213.4.0/24"), "/state/ipam")
    (bridge,) = conf["plugins"]
    assert bridge["bridge"] == "conch0"
    assert bridge["isGateway"] is False and bridge["ipMasq"] is False
    assert bridge["ipam"]["routes"] == []
    assert bridge["ipam"]["dataDir"] == "/state/ipam"
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.213.4.0/24", "gateway": "10.213.4.1"}]]


def test_containerd_config_keeps_everything_under_the_folder(tmp_path: Path) -> None:
    layout = nodeconfig.NodeLayout(tmp_path)
    text = nodeconfig.containerd_toml(layout, tmp_path / "cni-bin", "/usr/sbin/runc", "x/pause:1")
    conf = tomllib.loads(text)
    plugins = conf["plugins"]
    runtime = plugins["io.containerd.cri.v1.runtime"]
    runc = runtime["containerd"]["runtimes"]["runc"]["options"]
    assert conf["root"] == str(layout.containerd_root)
    assert conf["state"] == str(layout.containerd_state)
    assert conf["imports"] == []
    assert plugins["io.containerd.server.v1.grpc"]["address"] == str(layout.containerd_socket)
    assert plugins["io.containerd.internal.v1.opt"]["path"] == str(layout.opt)
    assert runtime["restrict_oom_score_adj"] is True
    assert runtime["netns_mounts_under_state_dir"] is True
    assert runc == {
        "BinaryName": "/usr/sbin/runc",
        "Root": str(layout.runc_root),
        "SystemdCgroup": False,
    }
    assert runtime["cni"]["bin_dirs"] == [str(tmp_path / "cni-bin")]
    assert runtime["cni"]["conf_dir"] == str(layout.cni_conf_dir)
    images = plugins["io.containerd.cri.v1.images"]
    assert images["pinned_images"]["sandbox"] == "x/pause:1"
    assert images["registry"]["config_path"] == str(layout.certs_d)
    assert all(str(v).startswith(str(tmp_path)) or not str(v).startswith("/") for v in _paths(conf))


def _paths(conf: object) -> list[str]:
    if isinstance(conf, dict):
        return [p for v in conf.values() for p in _paths(v)]
    if isinstance(conf, list):
        return [p for v in conf for p in _paths(v)]
    return (
        [conf]
        if isinstance(conf, str) and conf.startswith("/") and conf != "/usr/sbin/runc"
        else []
    )


def test_a_rejected_path_never_reaches_toml(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="TOML"):
        nodeconfig.containerd_toml(nodeconfig.NodeLayout(tmp_path / "it's"), tmp_path, "r", "p")


def test_registry_hosts_point_at_loopback_only() -> None:
    conf = tomllib.loads(nodeconfig.registry_hosts_toml())
    assert conf["server"] == f"http://{nodeconfig.CLOSED_REGISTRY}"
    assert list(conf["host"]) == [f"http://{nodeconfig.CLOSED_REGISTRY}"]
    assert nodeconfig.CLOSED_REGISTRY.startswith("127.")


def test_kubelet_config_fits_these_vms(tmp_path: Path) -> None:
    layout = nodeconfig.NodeLayout(tmp_path)
    conf = nodeconfig.kubelet_config(
        layout, tmp_path / "ca.crt", (tmp_path / "s.crt", tmp_path / "s.key"), 4000, 4001
    )
    assert conf["address"] == "127.0.0.1" and conf["healthzBindAddress"] == "127.0.0.1"
    assert conf["readOnlyPort"] == 0
    assert conf["authentication"]["anonymous"]["enabled"] is False
    assert conf["authentication"]["x509"]["clientCAFile"] == str(tmp_path / "ca.crt")
    assert conf["authorization"]["mode"] == "Webhook"
    assert (conf["cgroupDriver"], conf["failCgroupV1"], conf["failSwapOn"]) == (
        "cgroupfs",
        False,
        False,
    )
    assert conf["oomScoreAdj"] == 0
    assert conf["containerRuntimeEndpoint"] == f"unix://{layout.containerd_socket}"
    for key in ("podLogsDir", "staticPodPath", "resolvConf"):
        assert conf[key].startswith(str(tmp_path))
    assert nodeconfig.NODE_TAINT in conf["registerWithTaints"]


def test_mountinfo_is_parsed_with_escapes() -> None:
    text = (
        "36 35 98:0 / /mnt/a\\040b rw,noatime master:1 - ext3 /dev/root rw\n"
        "40 25 0:35 / /sys/fs/cgroup/memory rw shared:9 - cgroup cgroup rw,memory\n"
    )
    assert parse_mountinfo(text) == [("/mnt/a b", "ext3"), ("/sys/fs/cgroup/memory", "cgroup")]


def test_archive_images(tmp_path: Path) -> None:
    import io
    import json
    import tarfile

    index = {
        "manifests": [
            {"digest": "sha256:a", "annotations": {"org.opencontainers.image.ref.name": "a/b:1"}},
            {"digest": "sha256:x"},
            {
                "digest": "sha256:c",
                "annotations": {
                    "org.opencontainers.image.ref.name": "2",
                    "io.containerd.image.name": "conch.local/c:2",
                },
            },
        ]
    }
    data = json.dumps(index).encode()
    archive = tmp_path / "img.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("./index.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    assert archive_images(archive) == {"a/b:1": "sha256:a", "conch.local/c:2": "sha256:c"}


def test_a_root_too_deep_for_containerds_sockets_is_refused_up_front() -> None:
    nodeconfig.NodeLayout(Path("/tmp/conch/node")).check_socket_paths()
    deep = nodeconfig.NodeLayout(Path("/tmp") / ("d" * 80) / "node")
    with pytest.raises(ValueError, match="too deep for containerd's unix sockets"):
        deep.check_socket_paths()
