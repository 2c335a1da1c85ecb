"""Pure data-plane entries, the desired set, and the diff against what the kernel holds.

Ownership: the driver lists only OUR entries (routes carrying the routing protocol number
`PROTO_SHOAL`; neighbours and FDB entries on our own overlay devices), so everything `diff` asks
to remove is ours; routes of anyone else are never listed and so never touched.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Protocol

# Routing protocol number tagging every route we program (`ip route ... proto 83`).
PROTO_SHOAL = 0x53


@dataclass(frozen=True)
class UnderlayInfo:
    """The node's physical side: its public IP, the interface holding it and that link's network."""

    public_ip: IPv4Address
    iface: str
    mtu: int
    network: IPv4Network

    def same_l2(self, peer: IPv4Address) -> bool:
        """A peer is on our L2 segment when its public IP is inside the underlay interface's network."""
        return peer in self.network


@dataclass(frozen=True, order=True)
class Route:
    """`dst via gateway dev dev [onlink] proto shoal` in the main table."""

    dst: IPv4Network
    gateway: IPv4Address
    dev: str
    onlink: bool = False

    def __str__(self) -> str:
        return f"{self.dst} via {self.gateway} dev {self.dev}{' onlink' if self.onlink else ''}"


@dataclass(frozen=True, order=True)
class Neighbour:
    """A permanent ARP entry: `ip` on `dev` is at `mac`."""

    dev: str
    ip: IPv4Address
    mac: str

    def __str__(self) -> str:
        return f"{self.ip} lladdr {self.mac} dev {self.dev}"


@dataclass(frozen=True, order=True)
class FdbEntry:
    """A VXLAN forwarding entry: frames for `mac` on `dev` are sent to the VTEP at `dst`."""

    dev: str
    mac: str
    dst: IPv4Address

    def __str__(self) -> str:
        return f"{self.mac} dev {self.dev} dst {self.dst}"


@dataclass(frozen=True)
class Desired:
    """What the data plane should hold; `rejected` names peers we refuse to program, and why."""

    routes: frozenset[Route] = frozenset()
    neighbours: frozenset[Neighbour] = frozenset()
    fdb: frozenset[FdbEntry] = frozenset()
    rejected: tuple[str, ...] = ()

    @staticmethod
    def of(
        routes: Iterable[Route] = (),
        neighbours: Iterable[Neighbour] = (),
        fdb: Iterable[FdbEntry] = (),
        rejected: Iterable[str] = (),
    ) -> Desired:
        return Desired(frozenset(routes), frozenset(neighbours), frozenset(fdb), tuple(rejected))

    @staticmethod
    def union(parts: Iterable[Desired]) -> Desired:
        parts = list(parts)
        return Desired.of(
            (r for p in parts for r in p.routes),
            (n for p in parts for n in p.neighbours),
            (e for p in parts for e in p.fdb),
            (m for p in parts for m in p.rejected),
        )


@dataclass(frozen=True)
class Changes:
    """The difference to apply. Order (see `steps`): routes out first, routes in last, so a route
    never points at a neighbour / FDB entry that is missing."""

    del_routes: tuple[Route, ...] = ()
    del_neighbours: tuple[Neighbour, ...] = ()
    del_fdb: tuple[FdbEntry, ...] = ()
    add_fdb: tuple[FdbEntry, ...] = ()
    add_neighbours: tuple[Neighbour, ...] = ()
    add_routes: tuple[Route, ...] = ()

    @property
    def empty(self) -> bool:
        return not (
            self.del_routes
            or self.del_neighbours
            or self.del_fdb
            or self.add_fdb
            or self.add_neighbours
            or self.add_routes
        )

    def __len__(self) -> int:
        return sum(
            len(x)
            for x in (
                self.del_routes,
                self.del_neighbours,
                self.del_fdb,
                self.add_fdb,
                self.add_neighbours,
                self.add_routes,
            )
        )


def diff(desired: Desired, actual: Desired) -> Changes:
    """What to remove from and add to `actual` (our entries in the kernel) to reach `desired`.

    Neighbours are keyed by (dev, ip): a changed MAC is a replace, not a delete + add, so the
    entry never disappears under live traffic. Deterministic order for readable logs and tests.
    """
    want_neigh = {(n.dev, n.ip): n for n in desired.neighbours}
    have_neigh = {(n.dev, n.ip): n for n in actual.neighbours}
    return Changes(
        del_routes=tuple(sorted(actual.routes - desired.routes)),
        del_neighbours=tuple(sorted(n for k, n in have_neigh.items() if k not in want_neigh)),
        del_fdb=tuple(sorted(actual.fdb - desired.fdb)),
        add_fdb=tuple(sorted(desired.fdb - actual.fdb)),
        add_neighbours=tuple(sorted(n for k, n in want_neigh.items() if have_neigh.get(k) != n)),
        add_routes=tuple(sorted(desired.routes - actual.routes)),
    )


class NetlinkDriver(Protocol):
    """The narrow kernel interface: `Netlink` (pyroute2, real) and `FakeNetlink` implement it.

    Errors are `OSError`s carrying the kernel's errno: EEXIST adding what exists, ESRCH deleting
    a missing route, ENOENT deleting a missing neighbour / FDB entry, ENODEV naming a missing link.
    """

    def underlay(self, public_ip: IPv4Address, iface: str | None = None) -> UnderlayInfo: ...

    def ensure_vxlan(
        self,
        name: str,
        vni: int,
        port: int,
        local_ip: IPv4Address,
        underlay_iface: str,
        mac: str,
        mtu: int,
    ) -> None: ...

    def link_mac(self, name: str) -> str | None: ...

    def delete_link(self, name: str) -> None: ...

    def ensure_address(self, dev: str, address: IPv4Interface) -> None: ...

    def list_routes(self) -> set[Route]: ...

    def add_route(self, route: Route) -> None: ...

    def del_route(self, route: Route) -> None: ...

    def list_neighbours(self, dev: str) -> set[Neighbour]: ...

    def add_neighbour(self, neighbour: Neighbour) -> None: ...

    def del_neighbour(self, neighbour: Neighbour) -> None: ...

    def list_fdb(self, dev: str) -> set[FdbEntry]: ...

    def add_fdb(self, entry: FdbEntry) -> None: ...

    def del_fdb(self, entry: FdbEntry) -> None: ...

    def close(self) -> None: ...
