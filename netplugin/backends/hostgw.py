"""host-gw: a plain route to each remote subnet via the peer's public IP; peers must share our L2."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from agent.errors import invalid
from netplugin.backends.base import Backend
from netplugin.config import NetworkConfig
from netplugin.dataplane.model import Desired, NetlinkDriver, Route, UnderlayInfo
from netplugin.subnet.model import SubnetLease


def not_on_l2(lease: SubnetLease, underlay: UnderlayInfo) -> str:
    return str(
        invalid(
            "PublicIP",
            str(lease.public_ip),
            f"host-gw needs every peer on this node's L2 segment {underlay.network} (dev {underlay.iface}), "
            f"but the lease for {lease.subnet} is outside it; use Backend vxlan (with DirectRouting)",
        )
    )


def hostgw_peer(lease: SubnetLease, underlay: UnderlayInfo) -> Desired:
    """`<subnet> via <public ip> dev <underlay iface>`, or a rejection when the peer is off-segment
    (the kernel could not resolve such a gateway: there would be a route that black-holes)."""
    if not underlay.same_l2(lease.public_ip):
        return Desired.of(rejected=[not_on_l2(lease, underlay)])
    return Desired.of(routes=[Route(lease.subnet, lease.public_ip, underlay.iface)])


class HostGwBackend(Backend):
    type_name = "host-gw"

    def prepare(
        self, driver: NetlinkDriver, config: NetworkConfig, underlay: UnderlayInfo, state_dir: Path
    ) -> tuple[int, str]:
        self.mtu = config.backend.mtu_for(underlay.mtu)
        return 0, ""

    def desired(self, local: SubnetLease, remotes: Iterable[SubnetLease], underlay: UnderlayInfo) -> Desired:
        return Desired.union(self._peer(lease, underlay) for lease in remotes)

    def _peer(self, lease: SubnetLease, underlay: UnderlayInfo) -> Desired:
        if lease.backend_type != self.type_name:
            rule = f"lease for {lease.subnet} does not match this node's backend {self.type_name}"
            return Desired.of(rejected=[str(invalid("BackendType", lease.backend_type, rule))])
        return hostgw_peer(lease, underlay)
