"""The node's container bridge: exists, is up, has the node subnet's gateway address and the MTU.

Level-triggered: `ensure_bridge` can run at every daemon start; it creates what is missing and
corrects what differs (an address from a previous subnet is removed) without recreating the
bridge, so running containers keep their connectivity across plugin restarts.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Interface

from agent.errors import invalid
from netplugin.dataplane.links import Links, mac_for

DEFAULT_BRIDGE = "shoal0"


@dataclass(frozen=True)
class Bridge:
    name: str
    index: int
    gateway: IPv4Interface
    mtu: int
    mac: str


def check_ifname(field: str, name: str) -> str:
    if not 1 <= len(name) <= 15 or "/" in name or any(c.isspace() for c in name):
        raise invalid(field, name, "interface names are 1-15 characters without '/' or spaces")
    return name


def check_mtu(mtu: int) -> int:
    if not 68 <= mtu <= 65535:
        raise invalid("mtu", mtu, "must be between 68 and 65535")
    return mtu


def ensure_bridge(links: Links, name: str = DEFAULT_BRIDGE, *, gateway: IPv4Interface, mtu: int) -> Bridge:
    """Create/up `name` with exactly `gateway` as its IPv4 address and `mtu`; idempotent."""
    check_ifname("bridge", name)
    check_mtu(mtu)
    if gateway.ip in (gateway.network.network_address, gateway.network.broadcast_address):
        raise invalid("gateway", str(gateway), "must be a host address of its subnet")
    mac = mac_for(gateway.ip)
    link = links.ensure_bridge(name, mtu=mtu, mac=mac)
    links.set_addresses(name, {gateway})
    return Bridge(name=name, index=link.index, gateway=gateway, mtu=mtu, mac=mac)
