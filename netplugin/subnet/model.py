"""One node's subnet lease, as every part of the plugin sees it (no I/O, no etcd)."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network


@dataclass(frozen=True)
class SubnetLease:
    """A node's claim on `subnet`: reach it through `public_ip` with its backend.

    vxlan leases carry the node's VXLAN id and VTEP MAC; host-gw leases leave them empty.
    """

    subnet: IPv4Network
    public_ip: IPv4Address
    backend_type: str
    vni: int = 0
    vtep_mac: str = ""
