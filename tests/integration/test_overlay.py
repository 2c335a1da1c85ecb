"""The overlay end to end in the netns lab, with real parts: etcd leases (LeaseManager +
LeaseWatcher), NetworkSync over the pyroute2 driver in each host's namespace, stand-in container
namespaces on a per-host bridge, TCP between them, and a scapy capture on the wire.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from controller.store.etcd import EtcdStore
from netplugin.backends.registry import BACKENDS
from netplugin.config import NetworkConfig, parse_config
from netplugin.dataplane.model import FdbEntry, Neighbour, Route
from netplugin.dataplane.netlink import Netlink
from netplugin.subnet import keyspace
from netplugin.subnet.leases import LeaseManager, LeaseWatcher, load_previous
from netplugin.subnet.model import SubnetLease
from netplugin.sync import NetworkSync
from tests.support.agent import wait_for
from tests.support.etcd import EtcdServer
from tests.support.lab import ContainerNs, Lab, LabHost, make_container_ns

CLUSTER = "10.5.0.0/16"
PY = sys.executable
ECHO_SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(16)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    with c:
        while data := c.recv(65536):
            c.sendall(data)
"""
# Sends N random bytes from a thread while reading the echo: exit 0 iff every byte came back.
ECHO_CLIENT = """
import os, socket, sys, threading
data = os.urandom(int(sys.argv[3]))
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
def send():
    c.sendall(data)
    c.shutdown(socket.SHUT_WR)
threading.Thread(target=send, daemon=True).start()
got = bytearray()
while chunk := c.recv(65536):
    got += chunk
sys.exit(0 if bytes(got) == data else 1)
"""
# Streams through the echo server until stdin closes: exit 0 iff every byte came back in order.
STREAM_CLIENT = """
import os, socket, sys, threading
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
sent = bytearray()
stop = threading.Event()
def send():
    while not stop.is_set():
        chunk = os.urandom(16384)
        sent.extend(chunk)
        c.sendall(chunk)
    c.shutdown(socket.SHUT_WR)
t = threading.Thread(target=send, daemon=True)
t.start()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
got = bytearray()
while chunk := c.recv(65536):
    got += chunk
t.join()
sys.exit(0 if len(got) > 0 and bytes(got) == bytes(sent) else 1)
"""
# Captures on one switch port until stdin closes, then prints what it saw as JSON.
SNIFFER = """
import json, sys
from scapy.all import AsyncSniffer, IP, UDP
from scapy.layers.vxlan import VXLAN
seen = set()
def record(p):
    if UDP in p and p[UDP].dport == 8472 and VXLAN in p:
        vx = p[VXLAN]
        if IP in vx.payload:
            inner = vx.payload[IP]
            seen.add(("vxlan", p[IP].src, p[IP].dst, int(vx.vni), inner.src, inner.dst))
    elif IP in p:
        seen.add(("plain", p[IP].src, p[IP].dst, int(p[IP].proto), "", ""))
def ready():
    print("ready", flush=True)
s = AsyncSniffer(iface=sys.argv[1], store=False, prn=record, started_callback=ready)
s.start()
sys.stdin.read()
s.stop()
print(json.dumps(sorted(seen)), flush=True)
"""


@dataclass
class Node:
    host: LabHost
    state: Path
    netlink: Netlink
    lease: SubnetLease
    sync: NetworkSync
    manager: LeaseManager
    watcher: LeaseWatcher
    store: EtcdStore
    container: ContainerNs
    container_ip: IPv4Address
    closed: bool = False

    def close(self) -> None:
        """Stop this node's plugin WITHOUT touching leases or kernel state (like SIGTERM)."""
        if self.closed:
            return
        self.closed = True
        self.watcher.close()
        self.sync.close()
        self.manager.close()
        self.netlink.close()
        self.store.close()

    def subnets_routed(self) -> set[IPv4Network]:
        return {r.dst for r in self.netlink.list_routes()}


@dataclass
class Overlay:
    """One in-process netplugin per lab host (the daemon's parts, wired the same way)."""

    lab: Lab
    endpoint: str
    base: Path
    config: NetworkConfig
    prefix: str = field(default_factory=lambda: f"/shoaltest-{uuid.uuid4().hex[:8]}/network")
    repair_interval: float = 5.0
    nodes: dict[int, Node] = field(default_factory=dict)

    def join(self, host: LabHost, reuse: Node | None = None) -> Node:
        """Start host's plugin; `reuse`: a restart, keeping that node's container stand-in."""
        state = self.base / f"state-{host.index}"
        store = EtcdStore([self.endpoint])
        netlink = Netlink(host.netns)
        try:
            underlay = netlink.underlay(host.public_ip)
            backend = BACKENDS[self.config.backend.type]()
            vni, mac = backend.prepare(netlink, self.config, underlay, state)
            manager = LeaseManager(store, self.config, self.prefix, ttl=5, state_dir=state)
            previous = load_previous(state)
            lease = manager.acquire(host.public_ip, self.config.backend.type, vni, mac, previous)
            manager.run_keepalive()
            if reuse is not None:
                container, ip = reuse.container, reuse.container_ip
            else:
                container, ip = self._container(host, lease.subnet, backend.mtu)
            sync = NetworkSync(netlink, backend, self.config, lease, underlay)
            watcher = LeaseWatcher(store, self.prefix, sync.update)
            sync.start_repair_loop(self.repair_interval)
        except BaseException:
            netlink.close()
            store.close()
            raise
        node = Node(host, state, netlink, lease, sync, manager, watcher, store, container, ip)
        self.nodes[host.index] = node
        return node

    def _container(self, host: LabHost, subnet: IPv4Network, mtu: int) -> tuple[ContainerNs, IPv4Address]:
        """A minimal bridge + veth (F's attach does this for real containers)."""
        gateway, ip = subnet.network_address + 1, subnet.network_address + 2
        ex = self.lab.exec
        if "cbr0" not in ex(host, ["ip", "-o", "link"]).stdout:
            ex(host, ["ip", "link", "add", "cbr0", "mtu", str(mtu), "type", "bridge"])
            ex(host, ["ip", "addr", "add", f"{gateway}/{subnet.prefixlen}", "dev", "cbr0"])
            ex(host, ["ip", "link", "set", "cbr0", "up"])
        c = make_container_ns(self.lab, host)
        veth = f"v{c.name[-6:]}"
        ex(
            host,
            [
                "ip",
                "link",
                "add",
                veth,
                "mtu",
                str(mtu),
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                c.name,
            ],
        )
        ex(host, ["ip", "link", "set", veth, "master", "cbr0", "up"])
        ex(c, ["ip", "addr", "add", f"{ip}/{subnet.prefixlen}", "dev", "eth0"])
        ex(c, ["ip", "link", "set", "eth0", "mtu", str(mtu), "up"])
        ex(c, ["ip", "route", "add", "default", "via", str(gateway)])
        return c, ip

    def wait_meshed(self) -> None:
        for node in self.nodes.values():
            others = {n.lease.subnet for n in self.nodes.values() if n is not node}
            wait_for(
                lambda node=node, others=others: node.subnets_routed() == others,
                what=f"routes on {node.host.netns}",
            )

    def close(self) -> None:
        for node in self.nodes.values():
            node.close()


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with EtcdServer(Path(tmp_path_factory.mktemp("etcd"))) as server:
        yield server.endpoint


def _config(backend: str, direct: bool = False) -> NetworkConfig:
    body = {"Network": CLUSTER, "Backend": {"Type": backend, "DirectRouting": direct}}
    return parse_config(json.dumps(body).encode())


@pytest.fixture
def overlay_factory(endpoint: str, tmp_path: Path) -> Iterator[Any]:
    made: list[tuple[Lab, Overlay]] = []

    def make(backend: str, hosts: int = 3, repair_interval: float = 5.0, direct: bool = False) -> Overlay:
        lab = Lab(hosts=hosts)
        lab.__enter__()
        ov = Overlay(lab, endpoint, tmp_path, _config(backend, direct), repair_interval=repair_interval)
        made.append((lab, ov))
        for h in lab.all_hosts:
            ov.join(h)
        return ov

    yield make
    for lab, ov in made:
        try:
            ov.close()
        finally:
            lab.close()


def echo_server(lab: Lab, node: Node, port: int = 7000) -> None:
    proc = lab.popen(
        node.container, [PY, "-c", ECHO_SERVER, str(node.container_ip), str(port)], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready"


def echo(lab: Lab, client: Node, server: Node, size: int = 200_000, port: int = 7000) -> bool:
    argv = [PY, "-c", ECHO_CLIENT, str(server.container_ip), str(port), str(size)]
    return lab.exec(client.container, argv, check=False).returncode == 0


class Capture:
    def __init__(self, lab: Lab, port: str) -> None:
        self.proc = lab.popen(
            lab.switch, [PY, "-c", SNIFFER, port], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == b"ready"

    def stop(self) -> list[list[Any]]:
        out, _ = self.proc.communicate(b"", timeout=30)
        seen: list[list[Any]] = json.loads(out)
        return seen


@pytest.mark.parametrize("backend", ["vxlan", "host-gw"])
def test_containers_on_different_hosts_talk_and_the_wire_shows_the_backend(
    overlay_factory: Any, backend: str
) -> None:
    ov: Overlay = overlay_factory(backend)
    ov.wait_meshed()
    n1, n2, n3 = ov.nodes[1], ov.nodes[2], ov.nodes[3]
    for node in (n1, n2, n3):
        echo_server(ov.lab, node)
    capture = Capture(ov.lab, "p1")  # host 1's port on the switch
    assert echo(ov.lab, n1, n3)
    assert echo(ov.lab, n2, n1)
    assert echo(ov.lab, n3, n2)
    seen = capture.stop()
    c1, c3 = str(n1.container_ip), str(n3.container_ip)
    u1, u3 = str(n1.host.public_ip), str(n3.host.public_ip)
    vxlan = {(s[1], s[2], s[3], s[4], s[5]) for s in seen if s[0] == "vxlan"}
    plain_containers = {(s[1], s[2]) for s in seen if s[0] == "plain" and s[1].startswith("10.5.")}
    if backend == "vxlan":
        # outer: host 1's and host 3's underlay addresses; VNI 1; inner: the container addresses
        assert (u1, u3, 1, c1, c3) in vxlan
        assert (u3, u1, 1, c3, c1) in vxlan
        assert plain_containers == set()
        assert n1.netlink.link_mac("shoal.1") == n1.lease.vtep_mac
    else:
        assert vxlan == set()
        assert (c1, c3) in plain_containers and (c3, c1) in plain_containers


def test_join_then_lease_expiry_removes_every_entry(overlay_factory: Any) -> None:
    ov: Overlay = overlay_factory("vxlan", hosts=2)
    ov.wait_meshed()
    echo_server(ov.lab, ov.nodes[1])
    started = time.monotonic()
    n3 = ov.join(ov.lab.add_host())
    echo_server(ov.lab, n3)
    wait_for(lambda: echo(ov.lab, ov.nodes[1], n3, size=1000), timeout=20, what="host 1 -> new host 3")
    print(
        f"\nbench: joining host reachable from host 1 after {time.monotonic() - started:.3f} s (with setup)"
    )
    assert echo(ov.lab, n3, ov.nodes[1])

    # host 3 dies: its plugin stops renewing; its lease key goes (as when the TTL runs out)
    n3.close()
    subnet = n3.lease.subnet
    ov.nodes[1].store.delete(keyspace.subnet_key(ov.prefix, subnet))
    dev = "shoal.1"
    for node in (ov.nodes[1], ov.nodes[2]):

        def gone(node: Node = node) -> bool:
            nl = node.netlink
            return (
                subnet not in node.subnets_routed()
                and all(n.ip != subnet.network_address for n in nl.list_neighbours(dev))
                and all(e.dst != n3.host.public_ip for e in nl.list_fdb(dev))
            )

        wait_for(gone, what=f"host 3's entries to leave {node.host.netns}")
        # what remains is exactly the other live peer's set
        other = ov.nodes[2] if node is ov.nodes[1] else ov.nodes[1]
        assert node.netlink.list_routes() == {
            Route(other.lease.subnet, other.lease.subnet.network_address, dev, True)
        }
        assert node.netlink.list_neighbours(dev) == {
            Neighbour(dev, other.lease.subnet.network_address, other.lease.vtep_mac)
        }
        assert node.netlink.list_fdb(dev) == {FdbEntry(dev, other.lease.vtep_mac, other.host.public_ip)}


def test_entries_deleted_by_hand_come_back(overlay_factory: Any) -> None:
    ov: Overlay = overlay_factory("vxlan", hosts=2, repair_interval=0.5)
    ov.wait_meshed()
    n1, n2 = ov.nodes[1], ov.nodes[2]
    before = (n1.netlink.list_routes(), n1.netlink.list_neighbours("shoal.1"), n1.netlink.list_fdb("shoal.1"))
    subnet = n2.lease.subnet
    ov.lab.exec(1, ["ip", "route", "del", str(subnet)])
    ov.lab.exec(1, ["ip", "neigh", "del", str(subnet.network_address), "dev", "shoal.1"])
    ov.lab.exec(
        1, ["bridge", "fdb", "del", n2.lease.vtep_mac, "dev", "shoal.1", "dst", str(n2.host.public_ip)]
    )
    assert n1.netlink.list_routes() == set()

    def restored() -> bool:
        now = (
            n1.netlink.list_routes(),
            n1.netlink.list_neighbours("shoal.1"),
            n1.netlink.list_fdb("shoal.1"),
        )
        return now == before

    wait_for(restored, timeout=10, what="the repair loop to restore route, neighbour and fdb entry")
    echo_server(ov.lab, n2)
    assert echo(ov.lab, n1, n2)


def test_restart_keeps_kernel_state_and_running_flows(overlay_factory: Any) -> None:
    ov: Overlay = overlay_factory("vxlan", hosts=2)
    ov.wait_meshed()
    n1, n2 = ov.nodes[1], ov.nodes[2]
    echo_server(ov.lab, n2)
    dump = [
        "sh",
        "-c",
        "ip -d link show shoal.1; ip route; ip neigh show dev shoal.1; bridge fdb show dev shoal.1",
    ]
    before = ov.lab.exec(1, dump).stdout
    # a TCP stream through the overlay runs while host 1's plugin is stopped and started again
    flow = ov.lab.popen(
        n1.container, [PY, "-c", STREAM_CLIENT, str(n2.container_ip), "7000"], stdin=subprocess.PIPE
    )
    n1.close()
    again = ov.join(n1.host, reuse=n1)
    assert again.lease.subnet == n1.lease.subnet and again.lease.vtep_mac == n1.lease.vtep_mac
    assert again.watcher.wait_synced(10)
    again.sync.repair()
    assert again.sync.last_changes.empty  # nothing was missing, nothing was removed
    assert ov.lab.exec(1, dump).stdout == before  # same device (same ifindex), routes, neighbours, fdb
    assert flow.stdin is not None
    flow.stdin.close()
    assert flow.wait(timeout=60) == 0  # the stream ran through the restart intact


def test_host_gw_refuses_a_peer_outside_the_l2_segment(
    overlay_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    ov: Overlay = overlay_factory("host-gw", hosts=2)
    ov.wait_meshed()
    n1 = ov.nodes[1]
    far = SubnetLease(IPv4Network("10.5.200.0/24"), IPv4Address("10.251.0.9"), "host-gw")
    with caplog.at_level(logging.ERROR, logger="netplugin.sync"):
        n1.store.put(keyspace.subnet_key(ov.prefix, far.subnet), keyspace.encode_lease(far))
        wait_for(
            lambda: any("10.251.0.9" in m for m in n1.sync.rejected),
            what="the off-segment peer to be refused",
        )
    message = next(m for m in n1.sync.rejected if "10.251.0.9" in m)
    assert message.startswith(
        "invalid PublicIP '10.251.0.9': host-gw needs every peer on this node's L2 segment"
    )
    assert any(message in r.getMessage() for r in caplog.records)
    assert far.subnet not in n1.subnets_routed()
    assert n1.subnets_routed() == {ov.nodes[2].lease.subnet}  # the good peer stays programmed
