"""Containers on different hosts reach each other by IP: real etcd, one `shoal netplugin` and one
`shoal agent` per lab host, busybox containers run by runc on each host's bridge network."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from tests.support.agent import AgentProcess, wait_for
from tests.support.etcd import EtcdServer
from tests.support.lab import Lab
from tests.support.netplugin import Daemon, set_network_config
from tests.support.registry import Registry

SERVE = "echo hello from $(hostname) > /tmp/index.html; exec httpd -f -p 80 -h /tmp"
LEASE_TTL = 3


@dataclass
class Host:
    plugin: Daemon
    agent: AgentProcess


@pytest.fixture(params=["vxlan", "host-gw"])
def hosts(request: pytest.FixtureRequest, tmp_path: Path, registry: Registry) -> Iterator[list[Host]]:
    backend: str = request.param
    prefix = f"/shoaltest-{uuid.uuid4().hex[:8]}/network"
    with EtcdServer(tmp_path / "etcd") as etcd, Lab(hosts=3) as lab:
        set_network_config(etcd.endpoint, prefix, "10.244.0.0/16", "--backend", backend)
        started: list[Host] = []
        try:
            for h in lab.all_hosts:
                base = tmp_path / h.netns
                base.mkdir()
                plugin = Daemon(h, base)
                plugin.start(etcd.endpoint, prefix, lease_ttl=LEASE_TTL)
                plugin.env()  # waits for the lease, the bridge and subnet.env
                flags = ["--network-env", str(plugin.subnet_file), "--network-netns", h.netns]
                agent = AgentProcess(base, registry.host, [*flags, "--stop-timeout", "1"])
                started.append(Host(plugin, agent))
                agent.start()
            yield started
        finally:
            for host in started:
                host.agent.teardown()
                host.plugin.stop()


def fetch(agent: AgentProcess, url: str) -> str:
    out = agent.cli("container", "run", "--name", "probe", "busybox", "wget", "-qO-", url, check=False)
    agent.cli("container", "rm", "-f", "probe", check=False)
    return out.stdout.strip()


def kernel_state(host: Host) -> str:
    """The node's routes, and for vxlan its device's neighbours and FDB entries, as `ip` shows them."""
    netns = host.plugin.host.netns
    script = "ip route; ip neigh show dev shoal.1 2>/dev/null; bridge fdb show dev shoal.1 2>/dev/null; true"
    result = subprocess.run(
        ["ip", "netns", "exec", netns, "sh", "-c", script], capture_output=True, text=True
    )
    return result.stdout


def conntrack_table(host: Host) -> list[str]:
    """The connections the kernel tracks in the host's namespace (/proc/net/nf_conntrack)."""
    argv = ["ip", "netns", "exec", host.plugin.host.netns, "cat", "/proc/net/nf_conntrack"]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.splitlines()


def test_containers_on_different_hosts_talk_and_a_dead_host_leaves_no_route(hosts: list[Host]) -> None:
    servers = []
    for i, host in enumerate(hosts, start=1):
        host.agent.cli(
            "container",
            "run",
            "-d",
            "--name",
            "web",
            "--hostname",
            f"web{i}",
            "-p",
            "8080:80",
            "busybox",
            "sh",
            "-c",
            SERVE,
        )
        servers.append(host.agent.inspect("web")["ip_address"])
    subnets = {IPv4Network(f"{ip}/24", strict=False) for ip in servers}
    assert len(subnets) == 3  # one subnet per host

    # Every host's containers reach every other host's, by the container's own IP.
    for src in range(3):
        for dst in range(3):
            if src != dst:
                wait_for(
                    lambda s=src, d=dst: (
                        fetch(hosts[s].agent, f"http://{servers[d]}/") == f"hello from web{d + 1}"
                    ),
                    timeout=30,
                    interval=0.2,
                    what=f"host {src + 1} -> the container on host {dst + 1}",
                )

    # Routed container-to-container connections bypassed conntrack on every host (Shoal's notrack
    # rules): closed TCP connections stay in the table for minutes, so they would show here.
    for host in hosts:
        tracked = [
            c for c in conntrack_table(host) for ip in servers if f"dst={ip} " in c and "dport=80 " in c
        ]
        assert not tracked
    # A published port of another host, reached at its underlay address or at its bridge's gateway
    # address (cluster traffic that is DNATed: it must be tracked and masqueraded to come back).
    gateway = IPv4Network(f"{servers[1]}/24", strict=False).network_address + 1
    for address in (hosts[1].plugin.host.public_ip, gateway):
        assert fetch(hosts[0].agent, f"http://{address}:8080/") == "hello from web2"
        assert [c for c in conntrack_table(hosts[1]) if f"dst={address} " in c and "dport=8080 " in c]

    # Host 3's plugin dies: its lease is no longer renewed and, once it expires, its route (and for
    # vxlan its neighbour and FDB entry) is gone from the other hosts.
    dead = hosts[2].plugin
    dead_subnet = IPv4Network(f"{servers[2]}/24", strict=False)
    traces = [str(dead_subnet), f"{dead_subnet.network_address} ", f"dst {dead.host.public_ip} "]
    assert all(str(dead_subnet) in kernel_state(h) for h in hosts[:2])
    killed = time.monotonic()
    dead.kill9()
    for host in hosts[:2]:
        wait_for(
            lambda h=host: not any(t in kernel_state(h) for t in traces),
            timeout=LEASE_TTL + 10,
            what=f"{dead_subnet}'s entries removed",
        )
    print(f"\nnetplugin kill -9 -> its entries gone from the others after {time.monotonic() - killed:.2f} s")
    assert fetch(hosts[0].agent, f"http://{servers[1]}/") == "hello from web2"  # the living still talk
