"""Plug a container's network namespace into the node bridge, and unplug it.

attach: address from IPAM; a veth pair whose host end is `vs<hash10>` (named by the container id,
so detach finds it with nothing else stored) and whose other end is created directly inside the
container netns as eth0 (it never appears in the node namespace); MTU on both ends; inside the
container: lo up, the address, eth0 up, default route via the bridge's gateway address; last, the
host end joins the bridge and comes up, so no traffic flows before the container side is ready.
Attaching an already attached container only corrects what differs (idempotent); any failure
undoes what this call did. detach deletes the host end (which takes its peer with it) and frees
the address; it is idempotent and needs only the container id.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface

from netplugin.bridge import check_ifname, check_mtu
from netplugin.dataplane.links import Link, LinkError, Links, mac_for
from netplugin.ipam import Ipam, check_container_id

CONTAINER_IFNAME = "eth0"
HOST_PREFIX = "vs"


@dataclass(frozen=True)
class Attachment:
    ip: IPv4Interface
    gateway: IPv4Address
    host_veth: str
    mac: str


def host_veth_name(container_id: str) -> str:
    """`vs` + 10 hex digits of sha256(container id): 12 characters, stable for the container."""
    return HOST_PREFIX + hashlib.sha256(container_id.encode()).hexdigest()[:10]


def attach(links: Links, ipam: Ipam, container_id: str, netns_path: str, bridge: str, mtu: int) -> Attachment:
    check_container_id(container_id)
    check_ifname("bridge", bridge)
    check_mtu(mtu)
    host = host_veth_name(container_id)
    ip, new_address = ipam.claim(container_id)
    mac = mac_for(ip.ip)
    created = False
    try:
        existing = links.get_link(host)
        if existing is not None and not _peer_is_in(links, existing, netns_path):
            # A leftover from an earlier attach whose netns is gone or is another one.
            links.delete_link(host)
            existing = None
        if existing is None:
            links.add_veth(host, CONTAINER_IFNAME, netns_path, mtu=mtu, peer_mac=mac)
            created = True
        elif existing.mtu != mtu:
            links.set_mtu(host, mtu)
        with links.container(netns_path) as inside:
            eth = inside.configure(CONTAINER_IFNAME, ip, ipam.gateway.ip, mtu, fresh=created)
        links.enslave_up(host, bridge)
    except BaseException:
        if created:
            links.delete_link(host)
        if new_address:
            ipam.release(container_id)
        raise
    return Attachment(ip=ip, gateway=ipam.gateway.ip, host_veth=host, mac=eth.mac)


def detach(links: Links, ipam: Ipam, container_id: str) -> None:
    """Delete the container's veth pair (if any) and free its address (if any)."""
    check_container_id(container_id)
    links.delete_link(host_veth_name(container_id))
    ipam.release(container_id)


def _peer_is_in(links: Links, host: Link, netns_path: str) -> bool:
    """Is `host`'s peer the eth0 of the namespace at `netns_path`?"""
    if host.kind != "veth":
        raise LinkError(f"{host.name} exists in {links.where} but is not a veth: refusing to touch it")
    try:
        with links.container(netns_path) as inside:
            eth = inside.get(CONTAINER_IFNAME)
    except LinkError:  # that netns is gone
        return False
    return eth is not None and eth.peer_index == host.index
