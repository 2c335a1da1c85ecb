"""vxlan: one device `shoal.<vni>` (no learning); per peer a neighbour, an FDB entry and a route.

Per remote lease (flannel's layout): a permanent neighbour `<subnet>.0 -> peer VTEP MAC` on the
device, an FDB entry `peer VTEP MAC -> peer public IP`, and `<subnet> via <subnet>.0 onlink`,
which the sync adds last so it never points at a missing entry. The VTEP MAC is kept in the state
dir so a restarted node advertises the same one (peers' entries stay valid, flows undisturbed).
"""

from __future__ import annotations

import logging
import os
import random
import re
from collections.abc import Iterable
from ipaddress import IPv4Interface
from pathlib import Path

from agent.errors import invalid
from netplugin.backends.base import Backend
from netplugin.backends.direct import direct_peer
from netplugin.config import NetworkConfig
from netplugin.dataplane.model import Desired, FdbEntry, Neighbour, NetlinkDriver, Route, UnderlayInfo
from netplugin.subnet.model import SubnetLease

log = logging.getLogger(__name__)

MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def device_name(vni: int) -> str:
    return f"shoal.{vni}"  # at most 14 characters for a 24-bit VNI


def random_mac() -> str:
    """A locally administered unicast MAC (first octet: bit 1 set, bit 0 clear)."""
    octets = [random.randrange(256) for _ in range(6)]
    octets[0] = (octets[0] & 0xFC) | 0x02
    return ":".join(f"{o:02x}" for o in octets)


def stable_mac(state_dir: Path, vni: int, current: str | None) -> str:
    """The VTEP MAC persisted in `state_dir` (else the device's current one, else a new one)."""
    path = state_dir / f"vtep-{vni}.mac"
    try:
        saved = path.read_text().strip().lower()
    except FileNotFoundError:
        saved = ""
    if MAC_RE.match(saved):
        return saved
    if saved:
        log.warning("ignoring unreadable VTEP MAC %r in %s", saved, path)
    mac = current.lower() if current and MAC_RE.match(current.lower()) else random_mac()
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(mac + "\n")
    os.replace(tmp, path)  # atomic: a crash leaves the old file or the new one
    return mac


def vxlan_peer(dev: str, vni: int, lease: SubnetLease) -> Desired:
    if lease.backend_type != "vxlan":
        rule = f"lease for {lease.subnet} does not match this node's backend vxlan"
        return Desired.of(rejected=[str(invalid("BackendType", lease.backend_type, rule))])
    if not MAC_RE.match(lease.vtep_mac.lower()):
        rule = f"lease for {lease.subnet} needs the peer's VTEP MAC"
        return Desired.of(rejected=[str(invalid("VtepMAC", lease.vtep_mac, rule))])
    if lease.vni != vni:
        rule = f"lease for {lease.subnet} must use this cluster's VNI {vni}"
        return Desired.of(rejected=[str(invalid("VNI", lease.vni, rule))])
    gateway = lease.subnet.network_address
    mac = lease.vtep_mac.lower()
    return Desired.of(
        routes=[Route(lease.subnet, gateway, dev, onlink=True)],
        neighbours=[Neighbour(dev, gateway, mac)],
        fdb=[FdbEntry(dev, mac, lease.public_ip)],
    )


class VxlanBackend(Backend):
    type_name = "vxlan"

    def __init__(self) -> None:
        super().__init__()
        self.vni = 0
        self.port = 0
        self.mac = ""
        self.direct_routing = False
        self._underlay: UnderlayInfo | None = None

    @property
    def device(self) -> str:
        return device_name(self.vni)

    def prepare(
        self, driver: NetlinkDriver, config: NetworkConfig, underlay: UnderlayInfo, state_dir: Path
    ) -> tuple[int, str]:
        b = config.backend
        self.vni, self.port, self.direct_routing = b.vni, b.port, b.direct_routing
        self.mtu = b.mtu_for(underlay.mtu)
        self.devices = (self.device,)
        self._underlay = underlay
        self.mac = stable_mac(state_dir, self.vni, driver.link_mac(self.device))
        self._ensure_device(driver)
        return self.vni, self.mac

    def _ensure_device(self, driver: NetlinkDriver) -> None:
        assert self._underlay is not None, "prepare() first"
        u = self._underlay
        driver.ensure_vxlan(self.device, self.vni, self.port, u.public_ip, u.iface, self.mac, self.mtu)

    def ensure(self, driver: NetlinkDriver, local: SubnetLease) -> None:
        # flannel gives the device our subnet's .0/32 so traffic from this host to remote
        # containers leaves with an address of our subnet, which every peer routes back.
        self._ensure_device(driver)
        driver.ensure_address(self.device, IPv4Interface(f"{local.subnet.network_address}/32"))

    def desired(self, local: SubnetLease, remotes: Iterable[SubnetLease], underlay: UnderlayInfo) -> Desired:
        def overlay(lease: SubnetLease) -> Desired:
            return vxlan_peer(self.device, self.vni, lease)

        if self.direct_routing:
            return Desired.union(direct_peer(lease, underlay, overlay) for lease in remotes)
        return Desired.union(overlay(lease) for lease in remotes)
