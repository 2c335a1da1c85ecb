"""Backends turn leases into entries (pure), and the vxlan device/MAC is stable across restarts."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

from netplugin.backends.hostgw import HostGwBackend
from netplugin.backends.registry import BACKENDS
from netplugin.backends.vxlan import VxlanBackend, device_name
from netplugin.config import parse_config
from netplugin.dataplane.fake import FakeNetlink
from netplugin.dataplane.model import FdbEntry, Neighbour, Route, UnderlayInfo
from netplugin.subnet.model import SubnetLease

UNDERLAY = UnderlayInfo(IPv4Address("10.250.0.1"), "eth0", 1500, IPv4Network("10.250.0.0/24"))
LOCAL = SubnetLease(IPv4Network("10.5.1.0/24"), UNDERLAY.public_ip, "vxlan", 1, "02:00:00:00:01:01")


def _fake() -> FakeNetlink:
    return FakeNetlink({"eth0": (IPv4Interface("10.250.0.1/24"), 1500)})


def _lease(n: int, public: str | None = None, kind: str = "vxlan") -> SubnetLease:
    mac = f"02:00:00:00:00:{n:02x}" if kind == "vxlan" else ""
    return SubnetLease(
        IPv4Network(f"10.5.{n}.0/24"), IPv4Address(public or f"10.250.0.{n}"), kind, int(bool(mac)), mac
    )


def _config(backend: str) -> bytes:
    return b'{"Network": "10.5.0.0/16", "Backend": ' + backend.encode() + b"}"


def test_registry_keys_are_flannel_backend_types() -> None:
    assert set(BACKENDS) == {"vxlan", "host-gw"}
    assert BACKENDS["vxlan"] is VxlanBackend and BACKENDS["host-gw"] is HostGwBackend


def test_vxlan_prepare_makes_the_device_and_keeps_its_mac(tmp_path: Path) -> None:
    fake = _fake()
    b = VxlanBackend()
    vni, mac = b.prepare(fake, parse_config(_config('{"Type": "vxlan"}')), UNDERLAY, tmp_path)
    assert (vni, b.device, b.mtu, b.devices) == (1, "shoal.1", 1450, ("shoal.1",))
    assert fake.link_mac("shoal.1") == mac and (tmp_path / "vtep-1.mac").read_text().strip() == mac
    assert int(mac.split(":")[0], 16) & 0b11 == 0b10  # locally administered, unicast
    again = VxlanBackend()  # a restart: same MAC, device reused (not recreated)
    assert again.prepare(fake, parse_config(_config('{"Type": "vxlan"}')), UNDERLAY, tmp_path) == (1, mac)
    assert fake.created_links == 1
    fresh_state = VxlanBackend()  # state dir lost: the device's MAC is adopted
    assert fresh_state.prepare(fake, parse_config(_config("{}")), UNDERLAY, tmp_path / "new")[1] == mac
    assert len(device_name(16_777_215)) <= 15


def test_vxlan_entries_per_peer(tmp_path: Path) -> None:
    b = VxlanBackend()
    b.prepare(_fake(), parse_config(_config("{}")), UNDERLAY, tmp_path)
    d = b.desired(LOCAL, [_lease(2)], UNDERLAY)
    gw = IPv4Address("10.5.2.0")
    assert d.routes == {Route(IPv4Network("10.5.2.0/24"), gw, "shoal.1", onlink=True)}
    assert d.neighbours == {Neighbour("shoal.1", gw, "02:00:00:00:00:02")}
    assert d.fdb == {FdbEntry("shoal.1", "02:00:00:00:00:02", IPv4Address("10.250.0.2"))}
    assert d.rejected == ()


def test_vxlan_rejects_leases_it_cannot_program(tmp_path: Path) -> None:
    b = VxlanBackend()
    b.prepare(_fake(), parse_config(_config("{}")), UNDERLAY, tmp_path)
    bad_mac = SubnetLease(IPv4Network("10.5.3.0/24"), IPv4Address("10.250.0.3"), "vxlan", 1, "")
    other_vni = SubnetLease(
        IPv4Network("10.5.4.0/24"), IPv4Address("10.250.0.4"), "vxlan", 7, "02:00:00:00:00:04"
    )
    d = b.desired(LOCAL, [bad_mac, other_vni, _lease(5, kind="host-gw")], UNDERLAY)
    assert d.routes == frozenset()
    assert len(d.rejected) == 3
    assert "VtepMAC" in d.rejected[0] and "VNI" in d.rejected[1] and "BackendType" in d.rejected[2]


def test_host_gw_routes_via_peer_and_refuses_peers_off_the_segment(tmp_path: Path) -> None:
    b = HostGwBackend()
    assert b.prepare(_fake(), parse_config(_config('{"Type": "host-gw"}')), UNDERLAY, tmp_path) == (0, "")
    assert b.mtu == 1500 and b.devices == ()
    d = b.desired(LOCAL, [_lease(2, kind="host-gw"), _lease(3, "10.251.0.3", "host-gw")], UNDERLAY)
    assert d.routes == {Route(IPv4Network("10.5.2.0/24"), IPv4Address("10.250.0.2"), "eth0")}
    assert len(d.rejected) == 1
    assert "invalid PublicIP '10.251.0.3'" in d.rejected[0] and "L2 segment 10.250.0.0/24" in d.rejected[0]


def test_direct_routing_routes_same_segment_peers_directly(tmp_path: Path) -> None:
    b = VxlanBackend()
    b.prepare(_fake(), parse_config(_config('{"Type": "vxlan", "DirectRouting": true}')), UNDERLAY, tmp_path)
    d = b.desired(LOCAL, [_lease(2), _lease(3, "10.251.0.3")], UNDERLAY)
    assert d.routes == {
        Route(IPv4Network("10.5.2.0/24"), IPv4Address("10.250.0.2"), "eth0"),
        Route(IPv4Network("10.5.3.0/24"), IPv4Address("10.5.3.0"), "shoal.1", onlink=True),
    }
    assert {n.ip for n in d.neighbours} == {IPv4Address("10.5.3.0")}
    assert {e.dst for e in d.fdb} == {IPv4Address("10.251.0.3")}
    assert d.rejected == ()
