"""One contract for the NetlinkDriver seam, run against FakeNetlink and the real pyroute2 driver in a
lab namespace: the fake is only trusted because the kernel answers these same assertions."""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest

from agent.errors import InvalidArgument
from netplugin.dataplane.fake import FakeNetlink
from netplugin.dataplane.model import FdbEntry, Neighbour, NetlinkDriver, Route
from netplugin.dataplane.netlink import Netlink
from tests.support.lab import Lab

UNDERLAY = "10.250.0.0/24"
LOCAL = IPv4Address("10.250.0.1")
PEER = IPv4Address("10.250.0.2")
VX = "shoal.1"
MAC = "02:aa:00:00:00:01"
REMOTE_MAC = "02:bb:00:00:00:02"


@dataclass
class Kernel:
    driver: NetlinkDriver
    add_foreign_route: Callable[[Route], None]


@pytest.fixture(params=["fake", "real"])
def kernel(request: pytest.FixtureRequest) -> Iterator[Kernel]:
    if request.param == "fake":
        fake = FakeNetlink({"eth0": (IPv4Interface(f"{LOCAL}/24"), 1500)})
        yield Kernel(fake, fake.add_foreign_route)
        return
    with Lab(hosts=1, underlay=UNDERLAY) as lab:
        host = lab.host(1)
        assert host.public_ip == LOCAL

        def foreign(route: Route) -> None:
            argv = ["ip", "route", "add", str(route.dst), "via", str(route.gateway), "dev", route.dev]
            lab.exec(1, [*argv, *(["onlink"] if route.onlink else []), "proto", "static"])

        with Netlink(host.netns) as nl:
            yield Kernel(nl, foreign)


def _vxlan(k: Kernel, vni: int = 1, mac: str = MAC) -> None:
    k.driver.ensure_vxlan(VX, vni, 8472, LOCAL, "eth0", mac, 1450)


def _errno(fn: Callable[[], object]) -> int:
    with pytest.raises(OSError) as e:
        fn()
    assert e.value.errno is not None
    return e.value.errno


def test_underlay_lookup(kernel: Kernel) -> None:
    info = kernel.driver.underlay(LOCAL)
    assert (info.iface, info.mtu, info.network) == ("eth0", 1500, IPv4Network(UNDERLAY))
    assert kernel.driver.underlay(LOCAL, "eth0") == info
    assert info.same_l2(PEER) and not info.same_l2(IPv4Address("10.251.0.9"))
    with pytest.raises(InvalidArgument, match="public-ip"):
        kernel.driver.underlay(IPv4Address("10.251.0.9"))
    assert _errno(lambda: kernel.driver.underlay(LOCAL, "nosuch0")) == errno.ENODEV


def test_vxlan_device_is_ensured_and_recreated_when_incompatible(kernel: Kernel) -> None:
    assert kernel.driver.link_mac(VX) is None
    _vxlan(kernel)
    assert kernel.driver.link_mac(VX) == MAC
    _vxlan(kernel)  # idempotent
    route = Route(IPv4Network("10.5.2.0/24"), IPv4Address("10.5.2.0"), VX, onlink=True)
    kernel.driver.add_route(route)
    neighbour = Neighbour(VX, IPv4Address("10.5.2.0"), REMOTE_MAC)
    kernel.driver.add_neighbour(neighbour)
    _vxlan(kernel)  # nothing differs: nothing is touched, the neighbour stays
    assert kernel.driver.list_neighbours(VX) == {neighbour}
    _vxlan(kernel, mac="02:aa:00:00:00:09")  # MAC changes in place: routes stay, neighbours are flushed
    assert kernel.driver.link_mac(VX) == "02:aa:00:00:00:09"
    assert kernel.driver.list_routes() == {route}
    assert kernel.driver.list_neighbours(VX) == set()
    _vxlan(
        kernel, vni=2, mac="02:aa:00:00:00:09"
    )  # incompatible: recreated, and the kernel flushed its routes
    assert kernel.driver.link_mac(VX) == "02:aa:00:00:00:09"
    assert kernel.driver.list_routes() == set()
    assert (
        _errno(lambda: kernel.driver.ensure_vxlan("shoal.9", 9, 8472, LOCAL, "nosuch0", MAC, 1450))
        == errno.ENODEV
    )


def test_routes_errors_and_ownership(kernel: Kernel) -> None:
    d = kernel.driver
    _vxlan(kernel)
    overlay = Route(IPv4Network("10.5.2.0/24"), IPv4Address("10.5.2.0"), VX, onlink=True)
    direct = Route(IPv4Network("10.5.3.0/24"), PEER, "eth0")
    d.add_route(overlay)
    d.add_route(direct)
    assert d.list_routes() == {overlay, direct}
    assert _errno(lambda: d.add_route(overlay)) == errno.EEXIST
    # the destination is taken even with another gateway
    assert _errno(lambda: d.add_route(Route(overlay.dst, PEER, "eth0"))) == errno.EEXIST
    assert _errno(lambda: d.del_route(Route(IPv4Network("10.5.4.0/24"), PEER, "eth0"))) == errno.ESRCH
    assert _errno(lambda: d.add_route(Route(IPv4Network("10.5.5.0/24"), PEER, "nosuch0"))) == errno.ENODEV
    off_net = Route(IPv4Network("10.5.6.0/24"), IPv4Address("10.251.0.9"), "eth0")
    assert _errno(lambda: d.add_route(off_net)) == errno.ENETUNREACH
    # someone else's route: never listed, and our delete (proto-qualified) cannot remove it
    foreign = Route(IPv4Network("10.9.0.0/16"), PEER, "eth0")
    kernel.add_foreign_route(foreign)
    assert d.list_routes() == {overlay, direct}
    assert _errno(lambda: d.del_route(foreign)) == errno.ESRCH
    d.del_route(overlay)
    d.del_route(direct)
    assert d.list_routes() == set()
    assert _errno(lambda: d.del_route(direct)) == errno.ESRCH


def test_neighbours(kernel: Kernel) -> None:
    d = kernel.driver
    _vxlan(kernel)
    n = Neighbour(VX, IPv4Address("10.5.2.0"), REMOTE_MAC)
    d.add_neighbour(n)
    d.add_neighbour(n)  # replace semantics: no EEXIST
    assert d.list_neighbours(VX) == {n}
    moved = Neighbour(VX, n.ip, "02:bb:00:00:00:03")
    d.add_neighbour(moved)
    assert d.list_neighbours(VX) == {moved}
    d.del_neighbour(moved)
    assert d.list_neighbours(VX) == set()
    assert _errno(lambda: d.del_neighbour(moved)) == errno.ENOENT
    assert _errno(lambda: d.list_neighbours("nosuch0")) == errno.ENODEV
    assert _errno(lambda: d.add_neighbour(Neighbour("nosuch0", n.ip, REMOTE_MAC))) == errno.ENODEV


def test_fdb(kernel: Kernel) -> None:
    d = kernel.driver
    _vxlan(kernel)
    e = FdbEntry(VX, REMOTE_MAC, PEER)
    d.add_fdb(e)
    d.add_fdb(e)  # append of an identical entry is not an error
    moved = FdbEntry(VX, REMOTE_MAC, IPv4Address("10.250.0.3"))
    d.add_fdb(moved)  # the kernel appends remotes only for all-zero/multicast MACs: a no-op here
    assert d.list_fdb(VX) == {e}
    d.del_fdb(moved)  # known MAC, other destination: the kernel answers success and keeps `e`
    assert d.list_fdb(VX) == {e}
    second = FdbEntry(VX, "02:bb:00:00:00:04", PEER)
    d.add_fdb(second)
    assert d.list_fdb(VX) == {e, second}
    d.del_fdb(e)
    assert d.list_fdb(VX) == {second}
    d.add_fdb(moved)  # once the old destination is gone the MAC can point elsewhere
    assert d.list_fdb(VX) == {moved, second}
    assert _errno(lambda: d.del_fdb(FdbEntry(VX, "02:bb:00:00:00:09", PEER))) == errno.ENOENT
    assert _errno(lambda: d.list_fdb("nosuch0")) == errno.ENODEV


def test_delete_link_flushes_its_entries_and_address(kernel: Kernel) -> None:
    d = kernel.driver
    _vxlan(kernel)
    d.ensure_address(VX, IPv4Interface("10.5.1.0/32"))
    d.ensure_address(VX, IPv4Interface("10.5.7.0/32"))  # a new subnet replaces the old address
    d.ensure_address(VX, IPv4Interface("10.5.7.0/32"))
    d.add_neighbour(Neighbour(VX, IPv4Address("10.5.2.0"), REMOTE_MAC))
    d.add_fdb(FdbEntry(VX, REMOTE_MAC, PEER))
    d.add_route(Route(IPv4Network("10.5.2.0/24"), IPv4Address("10.5.2.0"), VX, onlink=True))
    d.delete_link(VX)
    d.delete_link(VX)  # idempotent
    assert d.link_mac(VX) is None
    assert d.list_routes() == set()
    _vxlan(kernel)
    assert d.list_neighbours(VX) == set() and d.list_fdb(VX) == set()
