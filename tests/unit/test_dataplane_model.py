"""The pure data-plane diff: removals first, routes last, neighbours replaced by (dev, ip)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from netplugin.dataplane.model import Desired, FdbEntry, Neighbour, Route, UnderlayInfo, diff

VX = "shoal.1"


def _peer(n: int, mac: str = "") -> Desired:
    mac = mac or f"02:00:00:00:00:{n:02x}"
    net = IPv4Network(f"10.5.{n}.0/24")
    return Desired.of(
        [Route(net, net.network_address, VX, onlink=True)],
        [Neighbour(VX, net.network_address, mac)],
        [FdbEntry(VX, mac, IPv4Address(f"10.250.0.{n}"))],
    )


def test_diff_of_equal_sets_is_empty() -> None:
    d = Desired.union([_peer(2), _peer(3)])
    assert diff(d, d).empty and len(diff(d, d)) == 0


def test_diff_adds_missing_and_removes_stale() -> None:
    have = Desired.union([_peer(2), _peer(3)])
    want = Desired.union([_peer(3), _peer(4)])
    c = diff(want, have)
    assert c.add_routes == tuple(_peer(4).routes) and c.del_routes == tuple(_peer(2).routes)
    assert c.add_neighbours == tuple(_peer(4).neighbours) and c.del_neighbours == tuple(_peer(2).neighbours)
    assert c.add_fdb == tuple(_peer(4).fdb) and c.del_fdb == tuple(_peer(2).fdb)
    assert len(c) == 6


def test_changed_vtep_mac_replaces_the_neighbour_but_moves_the_fdb_entry() -> None:
    c = diff(_peer(2, "02:aa:00:00:00:01"), _peer(2))
    assert c.del_neighbours == ()  # replaced in place: the entry never disappears
    assert [n.mac for n in c.add_neighbours] == ["02:aa:00:00:00:01"]
    assert [e.mac for e in c.del_fdb] == ["02:00:00:00:00:02"]
    assert [e.mac for e in c.add_fdb] == ["02:aa:00:00:00:01"]
    assert c.add_routes == () and c.del_routes == ()


def test_gateway_change_is_delete_then_add() -> None:
    net = IPv4Network("10.5.2.0/24")
    old = Desired.of([Route(net, net.network_address, VX, onlink=True)])
    new = Desired.of([Route(net, IPv4Address("10.250.0.2"), "eth0")])
    c = diff(new, old)
    assert c.del_routes == tuple(old.routes) and c.add_routes == tuple(new.routes)


def test_same_l2_is_membership_of_the_underlay_network() -> None:
    u = UnderlayInfo(IPv4Address("10.250.0.1"), "eth0", 1500, IPv4Network("10.250.0.0/24"))
    assert u.same_l2(IPv4Address("10.250.0.200"))
    assert not u.same_l2(IPv4Address("10.250.1.2"))
