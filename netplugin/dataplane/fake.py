"""An in-memory kernel for unit tests of the sync loop and backends.

It answers like the kernel (tests/integration/test_netlink_contract.py runs the same assertions
against a real namespace): EEXIST for a route whose destination is taken, ESRCH deleting a
missing route, ENOENT deleting a missing neighbour / FDB entry, ENODEV naming a missing link,
ENETUNREACH for a non-onlink gateway off the device's networks; an FDB append for a unicast MAC
that is already known is a no-op (the old destination stays), and so is deleting a known MAC
with another destination; deleting a link flushes its
routes, neighbours and FDB entries, and changing its MAC flushes its neighbours.
"""

from __future__ import annotations

import errno
import os
import threading
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface

from agent.errors import invalid
from netplugin.dataplane.model import PROTO_SHOAL, FdbEntry, Neighbour, Route, UnderlayInfo


def _err(code: int, what: str) -> OSError:
    return OSError(code, f"{os.strerror(code)}: {what}")


@dataclass
class FakeLink:
    name: str
    kind: str
    mac: str
    mtu: int
    addresses: list[IPv4Interface] = field(default_factory=list)
    vxlan: tuple[int, int, IPv4Address, str] | None = None  # vni, port, local ip, underlay iface
    up: bool = True


class FakeNetlink:
    """A `NetlinkDriver` over dictionaries. `calls` counts mutating requests (for diff tests)."""

    def __init__(self, underlay: dict[str, tuple[IPv4Interface, int]] | None = None) -> None:
        self._lock = threading.Lock()
        self.links: dict[str, FakeLink] = {}
        # The kernel keys a main-table route by destination: value = (route, protocol number).
        self.routes: dict[str, tuple[Route, int]] = {}
        self.neighbours: dict[tuple[str, IPv4Address], Neighbour] = {}
        self.fdb: set[FdbEntry] = set()
        self.calls = 0
        self.created_links = 0
        for name, (address, mtu) in (underlay or {}).items():
            self.add_link(name, "veth", mtu, [address])

    # -- test helpers ------------------------------------------------------------------------

    def add_link(
        self, name: str, kind: str, mtu: int = 1500, addresses: list[IPv4Interface] | None = None
    ) -> None:
        n = len(self.links) + 1
        self.links[name] = FakeLink(name, kind, f"02:00:00:00:00:{n:02x}", mtu, list(addresses or []))

    def add_foreign_route(self, route: Route, proto: int = 4) -> None:
        """A route somebody else owns (default proto 4 = static)."""
        self._add_route(route, proto)

    # -- links -------------------------------------------------------------------------------

    def _link(self, name: str) -> FakeLink:
        link = self.links.get(name)
        if link is None:
            raise _err(errno.ENODEV, f"link {name}")
        return link

    def underlay(self, public_ip: IPv4Address, iface: str | None = None) -> UnderlayInfo:
        with self._lock:
            if iface is not None:
                link = self._link(iface)
                if not link.addresses:
                    raise invalid("iface", iface, "has no IPv4 address in netns (fake)")
                chosen = next((a for a in link.addresses if a.ip == public_ip), link.addresses[0])
                return UnderlayInfo(public_ip, link.name, link.mtu, chosen.network)
            for link in self.links.values():
                for a in link.addresses:
                    if a.ip == public_ip:
                        return UnderlayInfo(public_ip, link.name, link.mtu, a.network)
            raise invalid("public-ip", str(public_ip), "is not an address of any interface in netns (fake)")

    def link_mac(self, name: str) -> str | None:
        with self._lock:
            link = self.links.get(name)
            return link.mac if link else None

    def delete_link(self, name: str) -> None:
        with self._lock:
            self._delete_link(name)

    def _delete_link(self, name: str) -> None:
        if self.links.pop(name, None) is None:
            return
        self.calls += 1
        self.routes = {k: v for k, v in self.routes.items() if v[0].dev != name}
        self.neighbours = {k: v for k, v in self.neighbours.items() if v.dev != name}
        self.fdb = {e for e in self.fdb if e.dev != name}

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
        with self._lock:
            self._link(underlay_iface)
            want = (vni, port, local_ip, underlay_iface)
            link = self.links.get(name)
            if link is not None and (link.kind != "vxlan" or link.vxlan != want):
                self._delete_link(name)
                link = None
            if link is None:
                self.calls += 1
                self.created_links += 1
                self.links[name] = FakeLink(name, "vxlan", mac, mtu, vxlan=want)
            else:
                if link.mac != mac:  # NETDEV_CHANGEADDR flushes the device's neighbours
                    self.calls += 1
                    self.neighbours = {k: v for k, v in self.neighbours.items() if v.dev != name}
                link.mac, link.mtu, link.up = mac, mtu, True

    def ensure_address(self, dev: str, address: IPv4Interface) -> None:
        with self._lock:
            link = self._link(dev)
            if link.addresses != [address]:
                self.calls += 1
                link.addresses = [address]

    # -- routes ------------------------------------------------------------------------------

    def list_routes(self) -> set[Route]:
        with self._lock:
            return {r for r, proto in self.routes.values() if proto == PROTO_SHOAL}

    def _add_route(self, route: Route, proto: int) -> None:
        link = self._link(route.dev)
        if str(route.dst) in self.routes:
            raise _err(errno.EEXIST, f"route {route}")
        if not route.onlink and not any(route.gateway in a.network for a in link.addresses):
            raise _err(errno.ENETUNREACH, f"route {route}")
        self.calls += 1
        self.routes[str(route.dst)] = (route, proto)

    def add_route(self, route: Route) -> None:
        with self._lock:
            self._add_route(route, PROTO_SHOAL)

    def del_route(self, route: Route) -> None:
        with self._lock:
            self._link(route.dev)
            have = self.routes.get(str(route.dst))
            if have is None or have != (route, PROTO_SHOAL):
                raise _err(errno.ESRCH, f"route {route}")
            self.calls += 1
            del self.routes[str(route.dst)]

    # -- neighbours --------------------------------------------------------------------------

    def list_neighbours(self, dev: str) -> set[Neighbour]:
        with self._lock:
            self._link(dev)
            return {n for n in self.neighbours.values() if n.dev == dev}

    def add_neighbour(self, neighbour: Neighbour) -> None:
        with self._lock:
            self._link(neighbour.dev)
            self.calls += 1
            self.neighbours[(neighbour.dev, neighbour.ip)] = neighbour

    def del_neighbour(self, neighbour: Neighbour) -> None:
        with self._lock:
            self._link(neighbour.dev)
            if self.neighbours.pop((neighbour.dev, neighbour.ip), None) is None:
                raise _err(errno.ENOENT, f"neighbour {neighbour}")
            self.calls += 1

    # -- fdb ---------------------------------------------------------------------------------

    def list_fdb(self, dev: str) -> set[FdbEntry]:
        with self._lock:
            self._link(dev)
            return {e for e in self.fdb if e.dev == dev}

    def add_fdb(self, entry: FdbEntry) -> None:
        with self._lock:
            self._link(entry.dev)
            self.calls += 1
            # vxlan_fdb_update appends a remote only for all-zero / multicast MACs; for a unicast
            # MAC that is already known, NLM_F_APPEND without NLM_F_REPLACE changes nothing.
            if not any(e.dev == entry.dev and e.mac == entry.mac for e in self.fdb):
                self.fdb.add(entry)

    def del_fdb(self, entry: FdbEntry) -> None:
        with self._lock:
            self._link(entry.dev)
            if not any(e.dev == entry.dev and e.mac == entry.mac for e in self.fdb):
                raise _err(errno.ENOENT, f"fdb {entry}")
            self.calls += 1
            self.fdb.discard(entry)  # a known MAC with another destination: success, nothing changes

    def close(self) -> None:
        pass
