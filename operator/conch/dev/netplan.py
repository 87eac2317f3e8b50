"""Pure decisions about the real node's network: which pod subnet, and which addresses may
be dialled. The harness owns one bridge and one /24; nothing else is ever a destination
besides 127.0.0.0/8 (no forwarding, no default route in pods, no kube-proxy)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

CANDIDATES = ipaddress.IPv4Network("10.213.0.0/16")
"""Where the harness looks for a free /24 for its bridge."""


def pick_subnet(
    taken: Iterable[ipaddress.IPv4Network], pool: ipaddress.IPv4Network = CANDIDATES
) -> ipaddress.IPv4Network:
    """The first /24 of `pool` that overlaps no route this host already has (a default
    route overlaps everything, so it is not counted)."""
    used = [net for net in taken if net.prefixlen > 0]
    for subnet in pool.subnets(new_prefix=24):
        if not any(subnet.overlaps(net) for net in used):
            return subnet
    raise RuntimeError(f"no free /24 in {pool} for the dev node's bridge")


def routed_networks(routes: list[dict[str, Any]]) -> list[ipaddress.IPv4Network]:
    """Destinations of `ip -j -4 route show table all` (host routes as /32)."""
    nets = []
    for route in routes:
        dst = route.get("dst", "default")
        if dst == "default":
            continue
        nets.append(ipaddress.IPv4Network(dst, strict=False))
    return nets


def bridge_address(subnet: ipaddress.IPv4Network) -> ipaddress.IPv4Interface:
    """The host's own address on the bridge (the subnet's first), so it can reach pods."""
    return ipaddress.IPv4Interface(f"{subnet.network_address + 1}/{subnet.prefixlen}")


def cni_conflist(
    bridge: str, subnet: ipaddress.IPv4Network, ipam_dir: str, name: str = "conch"
) -> dict[str, Any]:
    """The bridge + host-local network: no gateway on the bridge (so no IP forwarding is
    turned on), no masquerade, and no routes, so a pod has no default route."""
    return {
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": False,
                "isDefaultGateway": False,
                "ipMasq": False,
                "hairpinMode": False,
                "ipam": {
                    "type": "host-local",
                    "ranges": [
                        [{"subnet": str(subnet), "gateway": str(bridge_address(subnet).ip)}]
                    ],
                    "routes": [],
                    "dataDir": ipam_dir,
                },
            }
        ],
    }


def dialable_pod_ip(ip: str, subnet: ipaddress.IPv4Network) -> str:
    """`ip` itself when it lies on the harness's bridge subnet; anything else is refused,
    because the only addresses tests may dial are loopback and pods on that bridge."""
    address = ipaddress.ip_address(ip)
    reserved = (subnet.network_address, subnet.broadcast_address, bridge_address(subnet).ip)
    if address not in subnet or address in reserved:
        raise ValueError(f"{ip} is not a pod address on the dev node's bridge ({subnet})")
    return ip
