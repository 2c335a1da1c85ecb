"""The netplugin's Prometheus metrics.

State (leases known, entries programmed, container addresses in use) is read at scrape time
from the running parts; what happens (sync passes, repairs, failed renewals) is counted by the
hooks the parts call (`NetworkSync.on_sync`, `LeaseManager.on_renew_failure`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import Counter, Histogram
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from agent.metrics_server import family_names, new_registry
from netplugin.dataplane.model import Desired

if TYPE_CHECKING:
    from netplugin.daemon import Netplugin

TRIGGERS = ("watch", "relist", "repair")
KINDS = ("route", "neighbour", "fdb")
IPAM_NETWORK = "shoal"
"""The network name the agent's IPAM keeps its files under (agent.network: Ipam's default)."""
# A pass lists and diffs a few entries per node (≈1 ms), more with many nodes or a slow kernel.
SYNC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


# ---- pure ------------------------------------------------------------------------------------


def programmed_counts(programmed: Desired) -> dict[str, int]:
    # Neighbours are keyed by (dev, ip) in the kernel, as in the diff.
    neighbours = {(n.dev, n.ip) for n in programmed.neighbours}
    return {"route": len(programmed.routes), "neighbour": len(neighbours), "fdb": len(programmed.fdb)}


def count_allocations(names: Iterable[str], subnet: IPv4Network | None) -> int:
    """IPAM's files named by an address (one per container) inside our subnet."""
    count = 0
    for name in names:
        try:
            ip = IPv4Address(name)
        except ValueError:
            continue  # lock, last_reserved_ip, temporary files
        if subnet is None or ip in subnet:
            count += 1
    return count


def state_families(
    leases: int | None, programmed: Desired | None, allocated: int | None
) -> list[GaugeMetricFamily]:
    """The scrape-time gauges; a None part (not running yet) has no sample."""
    lease_family = GaugeMetricFamily(
        "shoal_netplugin_leases", "Subnet leases currently known, this node's included."
    )
    entries = GaugeMetricFamily(
        "shoal_netplugin_programmed_entries",
        "Kernel entries the last sync left programmed for remote leases.",
        labels=["kind"],
    )
    addresses = GaugeMetricFamily(
        "shoal_netplugin_allocated_addresses", "Container addresses in use on this node's subnet."
    )
    if leases is not None:
        lease_family.add_metric([], leases)
    if programmed is not None:
        for kind, count in programmed_counts(programmed).items():
            entries.add_metric([kind], count)
    if allocated is not None:
        addresses.add_metric([], allocated)
    return [lease_family, entries, addresses]


# ---- scrape-time reads -----------------------------------------------------------------------


def read_allocations(ipam_dir: Path, subnet: IPv4Network | None) -> int:
    """Count without IPAM's lock: a scrape must never wait for (or block) an allocation."""
    try:
        with os.scandir(ipam_dir / IPAM_NETWORK) as entries:
            return count_allocations((e.name for e in entries), subnet)
    except OSError:
        return 0  # no container was ever attached on this node


class NetpluginCollector:
    def __init__(self, plugin: Netplugin | None = None, ipam_dir: Path | None = None) -> None:
        self.plugin = plugin
        self.ipam_dir = ipam_dir

    def describe(self) -> Iterator[Metric]:
        yield from state_families(None, None, None)

    def collect(self) -> Iterator[Metric]:
        plugin = self.plugin
        watcher = plugin.watcher if plugin is not None else None
        sync = plugin.sync if plugin is not None else None
        leases = len(watcher.leases) if watcher is not None and watcher.wait_synced(0) else None
        subnet = sync.local.subnet if sync is not None else None
        allocated = read_allocations(self.ipam_dir, subnet) if self.ipam_dir and subnet else None
        yield from state_families(leases, sync.programmed if sync is not None else None, allocated)


# ---- the registry ----------------------------------------------------------------------------


class NetpluginMetrics:
    """Everything `shoal netplugin` exports; constructible without a running plugin."""

    def __init__(self, plugin: Netplugin | None = None, ipam_dir: Path | None = None) -> None:
        self.registry = new_registry("netplugin")
        r = self.registry
        self.sync_duration = Histogram(
            "shoal_netplugin_sync_duration_seconds",
            "Data plane passes: list the kernel, diff against the leases, apply.",
            buckets=SYNC_BUCKETS,
            registry=r,
        )
        self.syncs = Counter(
            "shoal_netplugin_syncs_total", "Data plane passes by what started them.", ["trigger"], registry=r
        )
        for trigger in TRIGGERS:
            self.syncs.labels(trigger)
        self.repaired = Counter(
            "shoal_netplugin_repaired_entries_total",
            "Entries the repair loop added back (deleted by hand or lost).",
            registry=r,
        )
        self.renewal_failures = Counter(
            "shoal_netplugin_lease_renewal_failures_total", "Subnet lease renewals that failed.", registry=r
        )
        self.state = NetpluginCollector(plugin, ipam_dir)
        r.register(self.state)

    def attach(self, plugin: Netplugin) -> None:
        self.state.plugin = plugin

    def observe_sync(self, trigger: str, seconds: float, repaired: int) -> None:
        self.sync_duration.observe(seconds)
        self.syncs.labels(trigger).inc()
        if repaired:
            self.repaired.inc(repaired)

    def renewal_failed(self) -> None:
        self.renewal_failures.inc()


def metric_names() -> set[str]:
    return family_names(NetpluginMetrics().registry)
