"""What every backend provides; the registry (registry.py) maps flannel's Backend.Type to one."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

from netplugin.config import NetworkConfig
from netplugin.dataplane.model import Desired, NetlinkDriver, UnderlayInfo
from netplugin.subnet.model import SubnetLease


class Backend(ABC):
    """Turns the set of remote leases into data-plane entries; all share NetworkSync to apply them.

    Lifecycle: `prepare` (before the lease: device + the values the lease advertises), `ensure`
    (after it, and again on every repair: device state that depends on our subnet), then
    `desired` (pure) for every change of the lease set.
    """

    type_name: ClassVar[str]

    def __init__(self) -> None:
        self.mtu = 0
        # Overlay devices whose neighbours and FDB entries are ours (listed and pruned by the sync).
        self.devices: tuple[str, ...] = ()

    @abstractmethod
    def prepare(
        self, driver: NetlinkDriver, config: NetworkConfig, underlay: UnderlayInfo, state_dir: Path
    ) -> tuple[int, str]:
        """Set up what the lease will advertise; returns (vni, vtep_mac) ((0, "") when none)."""

    def ensure(self, driver: NetlinkDriver, local: SubnetLease) -> None:
        """Idempotently (re)create local device state; called at start and by every repair."""
        return None

    @abstractmethod
    def desired(self, local: SubnetLease, remotes: Iterable[SubnetLease], underlay: UnderlayInfo) -> Desired:
        """Pure: the routes, neighbours and FDB entries for these remote leases."""
