"""NetworkSync over the fake kernel (its contract: tests/integration/test_netlink_contract.py)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

from netplugin.backends.registry import BACKENDS
from netplugin.config import parse_config
from netplugin.dataplane.fake import FakeNetlink
from netplugin.dataplane.model import Route, UnderlayInfo
from netplugin.subnet.model import SubnetLease
from netplugin.sync import NetworkSync
from tests.support.agent import wait_for

UNDERLAY = UnderlayInfo(IPv4Address("10.250.0.1"), "eth0", 1500, IPv4Network("10.250.0.0/24"))


def _lease(n: int, kind: str = "vxlan", public: str | None = None) -> SubnetLease:
    mac = f"02:00:00:00:00:{n:02x}" if kind == "vxlan" else ""
    return SubnetLease(
        IPv4Network(f"10.5.{n}.0/24"), IPv4Address(public or f"10.250.0.{n}"), kind, int(bool(mac)), mac
    )


def _sync(
    tmp_path: Path, backend: str = "vxlan", fake: FakeNetlink | None = None
) -> tuple[NetworkSync, FakeNetlink]:
    fake = fake or FakeNetlink({"eth0": (IPv4Interface("10.250.0.1/24"), 1500)})
    config = parse_config(b'{"Network": "10.5.0.0/16", "Backend": {"Type": "%s"}}' % backend.encode())
    b = BACKENDS[backend]()
    vni, mac = b.prepare(fake, config, UNDERLAY, tmp_path)
    local = SubnetLease(IPv4Network("10.5.1.0/24"), UNDERLAY.public_ip, backend, vni, mac)
    return NetworkSync(fake, b, config, local, UNDERLAY), fake


def _leases(*ns: int, kind: str = "vxlan") -> dict[IPv4Network, SubnetLease]:
    out = {lease.subnet: lease for lease in (_lease(n, kind) for n in ns)}
    return out


def test_update_programs_remote_leases_and_skips_our_own(tmp_path: Path) -> None:
    sync, fake = _sync(tmp_path)
    own = {sync.local.subnet: sync.local}
    sync.update({**own, **_leases(2, 3)})
    assert {r.dst for r in fake.list_routes()} == {IPv4Network("10.5.2.0/24"), IPv4Network("10.5.3.0/24")}
    assert len(fake.list_neighbours("shoal.1")) == 2 and len(fake.list_fdb("shoal.1")) == 2
    assert fake.links["shoal.1"].addresses == [IPv4Interface("10.5.1.0/32")]
    calls = fake.calls
    sync.update({**own, **_leases(2, 3)})  # level-triggered: nothing to do
    assert fake.calls == calls and sync.last_changes.empty


def test_lease_gone_removes_every_entry_of_it(tmp_path: Path) -> None:
    sync, fake = _sync(tmp_path)
    sync.update(_leases(2, 3))
    sync.update(_leases(3))
    assert {r.dst for r in fake.list_routes()} == {IPv4Network("10.5.3.0/24")}
    assert {n.ip for n in fake.list_neighbours("shoal.1")} == {IPv4Address("10.5.3.0")}
    assert {e.dst for e in fake.list_fdb("shoal.1")} == {IPv4Address("10.250.0.3")}


def test_foreign_routes_are_never_touched(tmp_path: Path) -> None:
    fake = FakeNetlink({"eth0": (IPv4Interface("10.250.0.1/24"), 1500)})
    foreign = Route(IPv4Network("10.5.2.0/24"), IPv4Address("10.250.0.9"), "eth0")
    other = Route(IPv4Network("192.168.0.0/16"), IPv4Address("10.250.0.9"), "eth0")
    fake.add_foreign_route(foreign)
    fake.add_foreign_route(other)
    sync, _ = _sync(tmp_path, fake=fake)
    sync.update(_leases(2, 3))  # 10.5.2.0/24 is taken by a static route: left alone, counted
    sync.update(_leases(3))
    assert fake.routes[str(foreign.dst)] == (foreign, 4) and fake.routes[str(other.dst)] == (other, 4)
    assert sync.errors == 1


def test_restart_changes_nothing_in_the_kernel(tmp_path: Path) -> None:
    sync, fake = _sync(tmp_path)
    sync.update(_leases(2, 3))
    sync.close()
    calls = fake.calls
    again, _ = _sync(tmp_path, fake=fake)  # same state dir: same MAC, device kept
    again.repair()  # before the first update: programs nothing, removes nothing
    again.update(_leases(2, 3))
    assert fake.calls == calls and fake.created_links == 1


def test_repair_restores_entries_and_the_device(tmp_path: Path) -> None:
    sync, fake = _sync(tmp_path)
    sync.update(_leases(2))
    route = next(iter(fake.list_routes()))
    fake.del_route(route)
    neighbour = next(iter(fake.list_neighbours("shoal.1")))
    fake.del_neighbour(neighbour)
    sync.repair()
    assert fake.list_routes() == {route} and fake.list_neighbours("shoal.1") == {neighbour}
    fake.delete_link("shoal.1")  # the whole device deleted by hand
    sync.repair()
    assert fake.list_routes() == {route} and len(fake.list_fdb("shoal.1")) == 1


def test_repair_loop_runs_until_closed(tmp_path: Path) -> None:
    sync, fake = _sync(tmp_path)
    sync.update(_leases(2))
    sync.start_repair_loop(interval=0.05)
    try:
        route = next(iter(fake.list_routes()))
        fake.del_route(route)
        wait_for(lambda: fake.list_routes() == {route}, what="the repair loop to restore the route")
    finally:
        sync.close()


def test_host_gw_rejection_is_reported_and_others_still_programmed(tmp_path: Path) -> None:
    sync, fake = _sync(tmp_path, "host-gw")
    far = _lease(3, "host-gw", public="10.251.0.3")
    sync.update({**_leases(2, kind="host-gw"), far.subnet: far})
    assert fake.list_routes() == {Route(IPv4Network("10.5.2.0/24"), IPv4Address("10.250.0.2"), "eth0")}
    assert len(sync.rejected) == 1 and "10.251.0.3" in sync.rejected[0]
