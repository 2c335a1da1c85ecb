"""DirectRouting (vxlan backend option): a plain route to peers on our L2 segment, VXLAN to the rest."""

from __future__ import annotations

from collections.abc import Callable

from netplugin.backends.hostgw import hostgw_peer
from netplugin.dataplane.model import Desired, UnderlayInfo
from netplugin.subnet.model import SubnetLease


def direct_peer(
    lease: SubnetLease, underlay: UnderlayInfo, overlay: Callable[[SubnetLease], Desired]
) -> Desired:
    """Same segment: host-gw's direct route (no encapsulation). Elsewhere: `overlay(lease)`."""
    if underlay.same_l2(lease.public_ip):
        return hostgw_peer(lease, underlay)
    return overlay(lease)
