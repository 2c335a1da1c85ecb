"""The netplugin's metrics: counts, sync hooks on the fake kernel, lease hooks on the memory store."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from prometheus_client import generate_latest

from controller.store.memory import MemoryStore
from netplugin.dataplane.model import Desired, FdbEntry, Neighbour, Route
from netplugin.ipam import Ipam
from netplugin.metrics import (
    NetpluginMetrics,
    count_allocations,
    metric_names,
    programmed_counts,
    read_allocations,
    state_families,
)
from netplugin.subnet.leases import LeaseManager, LeaseWatcher, SubnetLost
from tests.support.agent import wait_for
from tests.support.metrics import parse, value
from tests.unit.test_network_sync import _leases, _sync
from tests.unit.test_subnet_leases import SMALL, ManualClock, Recorder, ip, key_of, lease_at, manager, put

P = "/coreos.com/network"
CATALOG = {
    "shoal_build_info",
    "shoal_netplugin_leases",
    "shoal_netplugin_programmed_entries",
    "shoal_netplugin_sync_duration_seconds",
    "shoal_netplugin_syncs_total",
    "shoal_netplugin_repaired_entries_total",
    "shoal_netplugin_lease_renewal_failures_total",
    "shoal_netplugin_allocated_addresses",
}


def test_programmed_counts_key_neighbours_as_the_kernel_does() -> None:
    gw = IPv4Address("10.5.2.0")
    d = Desired.of(
        [Route(IPv4Network("10.5.2.0/24"), gw, "shoal.1", True)],
        [Neighbour("shoal.1", gw, "02:00:00:00:00:02"), Neighbour("shoal.1", gw, "02:00:00:00:00:03")],
        [FdbEntry("shoal.1", "02:00:00:00:00:02", IPv4Address("10.250.0.2"))],
    )
    assert programmed_counts(d) == {"route": 1, "neighbour": 1, "fdb": 1}
    assert programmed_counts(Desired()) == {"route": 0, "neighbour": 0, "fdb": 0}


def test_allocations_are_the_address_files_in_our_subnet(tmp_path: Path) -> None:
    subnet = IPv4Network("10.5.1.0/24")
    names = ["10.5.1.2", "10.5.1.3", "10.5.9.2", "lock", "last_reserved_ip", ".10.5.1.4.tmp"]
    assert count_allocations(names, subnet) == 2
    assert count_allocations(names, None) == 3
    ipam = Ipam(tmp_path, subnet)  # the agent's real IPAM, writing its files
    ipam.allocate("c1")
    ipam.allocate("c2")
    ipam.allocate("c3")
    ipam.release("c2")
    assert read_allocations(tmp_path, subnet) == 2
    assert read_allocations(tmp_path / "nothing-here", subnet) == 0


def test_state_gauges_have_no_sample_before_the_plugin_runs() -> None:
    families = state_families(None, None, None)
    assert [f.name for f in families] == [
        "shoal_netplugin_leases",
        "shoal_netplugin_programmed_entries",
        "shoal_netplugin_allocated_addresses",
    ]
    assert all(not f.samples for f in families)
    leases, entries, addresses = state_families(3, Desired(), 0)
    assert leases.samples[0].value == 3 and len(entries.samples) == 3 and addresses.samples[0].value == 0


def test_sync_passes_are_reported_with_their_trigger_and_repairs(tmp_path: Path) -> None:
    m = NetpluginMetrics()
    sync, fake = _sync(tmp_path)
    sync.on_sync = m.observe_sync
    sync.update(_leases(2, 3), "relist")
    assert programmed_counts(sync.programmed) == {"route": 2, "neighbour": 2, "fdb": 2}
    sync.update(_leases(2, 3))
    route = next(iter(fake.list_routes()))
    fake.del_route(route)  # deleted by hand
    sync.repair()
    s = parse(generate_latest(m.registry).decode())
    assert value(s, "shoal_netplugin_syncs_total", trigger="relist") == 1
    assert value(s, "shoal_netplugin_syncs_total", trigger="watch") == 1
    assert value(s, "shoal_netplugin_syncs_total", trigger="repair") == 1
    assert value(s, "shoal_netplugin_repaired_entries_total") == 1
    assert value(s, "shoal_netplugin_sync_duration_seconds_count") == 3
    assert programmed_counts(sync.programmed)["route"] == 2


def test_watcher_tells_relists_from_watch_batches() -> None:
    store = MemoryStore(ManualClock())
    put(store, lease_at(1))
    changes, relists = Recorder(), Recorder()
    w = LeaseWatcher(store, P, changes, on_relist=relists)
    try:
        assert w.wait_synced(5)
        assert len(relists.calls) == 1 and not changes.calls
        put(store, lease_at(2))
        wait_for(lambda: len(changes.last) == 2, what="the watch batch")
        assert len(relists.calls) == 1
    finally:
        w.close()
        store.close()


def test_failed_renewals_are_counted() -> None:
    store = MemoryStore(ManualClock())
    failures: list[None] = []
    lost: list[SubnetLost] = []
    m = LeaseManager(
        store,
        SMALL,
        P,
        ttl=1,
        rng=random.Random(1),
        on_lost=lost.append,
        on_renew_failure=lambda: failures.append(None),
    )
    lease = m.acquire(ip(1), "host-gw")
    m.run_keepalive()
    try:
        store.advance(5)  # our lease expires and another node takes the subnet
        manager(store, config=SMALL).acquire(ip(2), "host-gw", previous=lease.subnet)
        wait_for(lambda: lost, what="the renewal to find the subnet taken")
        assert failures and store.get(key_of(lease.subnet)) is not None
    finally:
        m.close()
        store.close()


def test_registry_names_every_catalog_metric() -> None:
    assert metric_names() == CATALOG
    m = NetpluginMetrics()
    m.renewal_failed()
    s = parse(generate_latest(m.registry).decode())
    assert value(s, "shoal_netplugin_lease_renewal_failures_total") == 1
    assert value(s, "shoal_build_info", component="netplugin") == 1
