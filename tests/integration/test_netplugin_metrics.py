"""`shoal netplugin --metrics-address` for real: one lab host on a real etcd, a second node's lease
taken by the real LeaseManager; /metrics is linted by promtool and its gauges match the kernel."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from controller.store.etcd import EtcdStore
from netplugin.config import validate_config
from netplugin.ipam import Ipam
from netplugin.subnet.leases import LeaseManager
from tests.integration.test_netplugin_daemon import Plugin
from tests.support.agent import wait_for
from tests.support.etcd import EtcdServer
from tests.support.lab import Lab
from tests.support.metrics import Series, logged_url, parse, promtool_check, scrape, value
from tests.support.netplugin import set_network_config

NETWORK = "10.246.0.0/16"
START = 30.0


def checked(url: str) -> Series:
    text = scrape(url)
    lint = promtool_check(text)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    return parse(text)


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[str]:
    with EtcdServer(tmp_path / "etcd") as server:
        yield server.endpoint


def test_netplugin_metrics_follow_leases_kernel_and_ipam(tmp_path: Path, etcd: str) -> None:
    prefix = f"/shoaltest-{uuid.uuid4().hex[:12]}/network"
    set_network_config(etcd, prefix, NETWORK)
    store = EtcdStore([etcd])
    with Lab(hosts=1) as lab:
        host = lab.host(1)
        # Another node's lease, taken the way its netplugin would take it.
        other = LeaseManager(store, validate_config({"Network": NETWORK}), prefix, ttl=30)
        remote = other.acquire(IPv4Address("10.250.0.99"), "vxlan", 1, "0a:58:0a:f6:63:01")
        plugin = Plugin(tmp_path, etcd, prefix, host)
        ipam_dir = tmp_path / "ipam"
        plugin.argv += ["--metrics-address", "127.0.0.1:0", "--ipam-dir", str(ipam_dir)]
        plugin.start()
        try:
            env = plugin.wait_up()
            url = logged_url(plugin.log, plugin.running)
            ipam = Ipam(ipam_dir, env.subnet)  # the agent's pool, as the agent fills it
            ipam.allocate("m2c1")
            ipam.allocate("m2c2")
            wait_for(  # subnet.env is written before the watcher's first list is applied
                lambda: value(parse(scrape(url)), "shoal_netplugin_syncs_total", trigger="relist") >= 1,
                timeout=START,
                what="the lease watcher's first list to be applied",
            )

            s = checked(url)
            assert value(s, "shoal_netplugin_leases") == 2
            assert value(s, "shoal_netplugin_allocated_addresses") == 2
            assert value(s, "shoal_etcd_request_duration_seconds_count", operation="txn") >= 1
            assert value(s, "shoal_build_info", component="netplugin") == 1
            # One remote lease on vxlan: a route, a neighbour and an FDB entry, as in the kernel.
            routes = lab.exec(host, ["ip", "route", "show", "proto", "83"]).stdout.splitlines()
            fdb = lab.exec(host, ["bridge", "fdb", "show", "dev", "shoal.1"]).stdout
            assert [r.split()[0] for r in routes] == [str(remote.subnet)]
            assert "dst 10.250.0.99" in fdb
            for kind in ("route", "neighbour", "fdb"):
                assert value(s, "shoal_netplugin_programmed_entries", kind=kind) == 1

            # The route deleted by hand: the repair loop puts it back, and says so.
            lab.exec(host, ["ip", "route", "del", str(remote.subnet), "proto", "83"])
            wait_for(
                lambda: value(parse(scrape(url)), "shoal_netplugin_repaired_entries_total") >= 1,
                timeout=START,
                what="the repair loop to re-add the route",
            )
            s = checked(url)
            assert value(s, "shoal_netplugin_syncs_total", trigger="repair") >= 1
            assert value(s, "shoal_netplugin_programmed_entries", kind="route") == 1
            assert len(lab.exec(host, ["ip", "route", "show", "proto", "83"]).stdout.splitlines()) == 1

            # A lease that goes away is seen through the watch.
            other.close()
            store.revoke(other.lease_id)

            def dropped() -> bool:
                s = parse(scrape(url))
                return (
                    value(s, "shoal_netplugin_leases") == 1
                    and value(s, "shoal_netplugin_syncs_total", trigger="watch") >= 1
                    and value(s, "shoal_netplugin_programmed_entries", kind="route") == 0
                )

            wait_for(dropped, timeout=START, what="the revoked lease's entries to go, through the watch")
            assert lab.exec(host, ["ip", "route", "show", "proto", "83"]).stdout.strip() == ""
            checked(url)
        finally:
            plugin.stop()
            store.close()
