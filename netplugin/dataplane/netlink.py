"""THE pyroute2 driver for the overlay: the VXLAN device, routes, neighbours and FDB entries.

`Netlink(netns)` programs inside the named network namespace (lab mode) through pyroute2's
`IPRoute(netns=...)` while this process stays in the root namespace (so it still reaches etcd
on loopback); `Netlink(None)` programs the process's own namespace. Kernel errors surface as
`OSError`s carrying the kernel's errno (see `NetlinkDriver`), with the entry in the message.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from agent.errors import invalid
from netplugin.dataplane.model import PROTO_SHOAL, FdbEntry, Neighbour, Route, UnderlayInfo

log = logging.getLogger(__name__)

AF_INET = 2
AF_BRIDGE = 7
MAIN_TABLE = 254
RTNH_F_ONLINK = 4
NUD_PERMANENT = 0x80
IFF_UP = 1

T = TypeVar("T")


def _oserror(code: int, what: str) -> OSError:
    # OSError(errno, msg) instantiates the matching subclass (FileExistsError for EEXIST, ...).
    return OSError(code, f"{os.strerror(code)}: {what}")


class Netlink:
    """The real `NetlinkDriver`. Thread-safe: one lock serialises every request on the socket."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._lock = threading.Lock()
        # No multicast groups (as links.py): nothing reads events; they would only queue up on
        # the socket and be parsed along with the next reply.
        self._ipr: Any = IPRoute(netns=netns, groups=0) if netns else IPRoute(groups=0)

    def close(self) -> None:
        with self._lock:
            self._ipr.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _call(self, what: str) -> Iterator[Any]:
        with self._lock:
            try:
                yield self._ipr
            except NetlinkError as e:
                raise _oserror(e.code, what) from None

    def _run(self, what: str, fn: Callable[[Any], T]) -> T:
        with self._call(what) as ipr:
            return fn(ipr)

    def _index(self, name: str) -> int:
        found = self._run(f"link {name}", lambda ipr: ipr.link_lookup(ifname=name))
        if not found:
            raise _oserror(errno.ENODEV, f"link {name}")
        return int(found[0])

    def _names(self) -> dict[int, str]:
        links = self._run("links", lambda ipr: ipr.get_links())
        return {int(link["index"]): str(link.get("IFLA_IFNAME")) for link in links}

    # -- links -------------------------------------------------------------------------------

    def underlay(self, public_ip: IPv4Address, iface: str | None = None) -> UnderlayInfo:
        """The interface holding `public_ip` (or the named `iface`), its MTU and its network."""
        addrs = self._run("addresses", lambda ipr: ipr.get_addr(family=AF_INET))
        names = self._names()
        if iface is not None:
            index = self._index(iface)
            mine = [a for a in addrs if int(a["index"]) == index]
            if not mine:
                raise invalid("iface", iface, f"has no IPv4 address in netns {self.netns or '(own)'}")
            chosen = next((a for a in mine if a.get("IFA_ADDRESS") == str(public_ip)), mine[0])
        else:
            match = [a for a in addrs if a.get("IFA_ADDRESS") == str(public_ip)]
            if not match:
                raise invalid(
                    "public-ip",
                    str(public_ip),
                    f"is not an address of any interface in netns {self.netns or '(own)'}",
                )
            chosen = match[0]
            index = int(chosen["index"])
        link = self._run(f"link {index}", lambda ipr: ipr.get_links(index))[0]
        network = IPv4Interface(f"{chosen.get('IFA_ADDRESS')}/{chosen['prefixlen']}").network
        return UnderlayInfo(public_ip, names[index], int(link.get("IFLA_MTU")), network)

    def link_mac(self, name: str) -> str | None:
        found = self._run(
            f"link {name}", lambda ipr: ipr.get_links(ifname=name) if ipr.link_lookup(ifname=name) else []
        )
        return str(found[0].get("IFLA_ADDRESS")) if found else None

    def delete_link(self, name: str) -> None:
        """Delete `name` if it exists (no error when it does not)."""
        found = self._run(f"link {name}", lambda ipr: ipr.link_lookup(ifname=name))
        if found:
            self._run(f"delete link {name}", lambda ipr: ipr.link("del", index=found[0]))

    def ensure_vxlan(
        self,
        name: str,
        vni: int,
        port: int,
        local_ip: IPv4Address,
        underlay_iface: str,
        mac: str,
        mtu: int,
    ) -> None:
        """Make `name` a VXLAN device with exactly these attributes, up (flannel's ensureLink).

        An existing device whose VNI, port, local address, underlay link or learning flag differ
        is deleted and recreated; MAC, MTU and up are set in place when they differ (a new MAC
        flushes the device's neighbours, as in the kernel: the next sync re-adds them)."""
        parent = self._index(underlay_iface)
        found = self._run(
            f"link {name}", lambda ipr: ipr.get_links(ifname=name) if ipr.link_lookup(ifname=name) else []
        )
        if found:
            link = found[0]
            info = link.get("IFLA_LINKINFO")
            data = info.get("IFLA_INFO_DATA") if info is not None else None
            compatible = (
                info is not None
                and info.get("IFLA_INFO_KIND") == "vxlan"
                and data is not None
                and data.get("IFLA_VXLAN_ID") == vni
                and data.get("IFLA_VXLAN_PORT") == port
                and data.get("IFLA_VXLAN_LOCAL") == str(local_ip)
                and data.get("IFLA_VXLAN_LINK") == parent
                and not data.get("IFLA_VXLAN_LEARNING")
            )
            if not compatible:
                log.warning("link %s exists with incompatible attributes: recreating it", name)
                self._run(f"delete link {name}", lambda ipr: ipr.link("del", index=link["index"]))
                found = []
        if not found:
            self._run(
                f"add vxlan {name} vni {vni}",
                lambda ipr: ipr.link(
                    "add",
                    ifname=name,
                    kind="vxlan",
                    vxlan_id=vni,
                    vxlan_port=port,
                    vxlan_local=str(local_ip),
                    vxlan_link=parent,
                    vxlan_learning=0,
                    address=mac,
                    mtu=mtu,
                ),
            )
        # Only what differs: setting the MAC, even to the same value, makes the kernel flush every
        # neighbour of the device (NETDEV_CHANGEADDR), permanent ones included.
        link = self._run(f"link {name}", lambda ipr: ipr.get_links(ifname=name))[0]
        index = int(link["index"])
        change: dict[str, Any] = {}
        if str(link.get("IFLA_ADDRESS")).lower() != mac.lower():
            change["address"] = mac
        if int(link.get("IFLA_MTU")) != mtu:
            change["mtu"] = mtu
        if not int(link["flags"]) & IFF_UP:
            change["state"] = "up"
        if change:
            self._run(f"set link {name} {change}", lambda ipr: ipr.link("set", index=index, **change))

    def ensure_address(self, dev: str, address: IPv4Interface) -> None:
        """Make `address` the only IPv4 address of `dev` (a stale one from an old subnet goes)."""
        index = self._index(dev)
        have = self._run(f"addresses of {dev}", lambda ipr: ipr.get_addr(family=AF_INET, index=index))
        present = False
        for a in have:
            current = IPv4Interface(f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}")
            if current == address:
                present = True
                continue
            with self._call(f"delete address {current} dev {dev}") as ipr:
                ipr.addr("del", index=index, address=str(current.ip), prefixlen=current.network.prefixlen)
        if not present:
            self._run(
                f"add address {address} dev {dev}",
                lambda ipr: ipr.addr(
                    "add", index=index, address=str(address.ip), prefixlen=address.network.prefixlen
                ),
            )

    # -- routes ------------------------------------------------------------------------------

    def list_routes(self) -> set[Route]:
        """Our routes only: main table, protocol PROTO_SHOAL."""
        names = self._names()
        raw = self._run(
            "routes", lambda ipr: ipr.get_routes(family=AF_INET, table=MAIN_TABLE, proto=PROTO_SHOAL)
        )
        routes: set[Route] = set()
        for r in raw:
            if r["proto"] != PROTO_SHOAL or r.get("RTA_GATEWAY") is None or r.get("RTA_OIF") is None:
                continue
            dst = IPv4Network(f"{r.get('RTA_DST') or '0.0.0.0'}/{r['dst_len']}")
            dev = names.get(int(r.get("RTA_OIF")), f"#{r.get('RTA_OIF')}")
            routes.add(Route(dst, IPv4Address(r.get("RTA_GATEWAY")), dev, bool(r["flags"] & RTNH_F_ONLINK)))
        return routes

    def _route_args(self, route: Route) -> dict[str, Any]:
        return {
            "dst": str(route.dst),
            "gateway": str(route.gateway),
            "oif": self._index(route.dev),
            "flags": RTNH_F_ONLINK if route.onlink else 0,
            "proto": PROTO_SHOAL,
            "table": MAIN_TABLE,
        }

    def add_route(self, route: Route) -> None:
        args = self._route_args(route)
        self._run(f"add route {route}", lambda ipr: ipr.route("add", **args))

    def del_route(self, route: Route) -> None:
        args = self._route_args(route)
        self._run(f"delete route {route}", lambda ipr: ipr.route("del", **args))

    # -- neighbours --------------------------------------------------------------------------

    def list_neighbours(self, dev: str) -> set[Neighbour]:
        """The permanent IPv4 neighbours on `dev` (ENODEV if it does not exist)."""
        index = self._index(dev)
        raw = self._run(f"neighbours of {dev}", lambda ipr: ipr.get_neighbours(family=AF_INET, ifindex=index))
        return {
            Neighbour(dev, IPv4Address(n.get("NDA_DST")), str(n.get("NDA_LLADDR")))
            for n in raw
            if int(n["ifindex"]) == index and n["state"] & NUD_PERMANENT and n.get("NDA_LLADDR")
        }

    def add_neighbour(self, neighbour: Neighbour) -> None:
        """Set (create or replace) a permanent entry: a stale or failed entry is overwritten."""
        index = self._index(neighbour.dev)
        self._run(
            f"set neighbour {neighbour}",
            lambda ipr: ipr.neigh(
                "replace", dst=str(neighbour.ip), lladdr=neighbour.mac, ifindex=index, state=NUD_PERMANENT
            ),
        )

    def del_neighbour(self, neighbour: Neighbour) -> None:
        index = self._index(neighbour.dev)
        self._run(
            f"delete neighbour {neighbour}",
            lambda ipr: ipr.neigh("del", dst=str(neighbour.ip), lladdr=neighbour.mac, ifindex=index),
        )

    # -- fdb ---------------------------------------------------------------------------------

    def list_fdb(self, dev: str) -> set[FdbEntry]:
        """The permanent FDB entries with a remote destination on `dev`."""
        index = self._index(dev)
        raw = self._run(f"fdb of {dev}", lambda ipr: list(ipr.fdb("dump", ifindex=index)))
        return {
            FdbEntry(dev, str(n.get("NDA_LLADDR")), IPv4Address(n.get("NDA_DST")))
            for n in raw
            if int(n["ifindex"]) == index
            and n["state"] & NUD_PERMANENT
            and n.get("NDA_DST") is not None
            and n.get("NDA_LLADDR") is not None
        }

    def add_fdb(self, entry: FdbEntry) -> None:
        """`bridge fdb append`. For a unicast MAC already known the kernel keeps the old destination
        (it appends remotes only for all-zero / multicast MACs): delete the stale entry first."""
        index = self._index(entry.dev)
        self._run(
            f"append fdb {entry}",
            lambda ipr: ipr.fdb("append", ifindex=index, lladdr=entry.mac, dst=str(entry.dst)),
        )

    def del_fdb(self, entry: FdbEntry) -> None:
        index = self._index(entry.dev)
        self._run(
            f"delete fdb {entry}",
            lambda ipr: ipr.fdb("del", ifindex=index, lladdr=entry.mac, dst=str(entry.dst)),
        )
