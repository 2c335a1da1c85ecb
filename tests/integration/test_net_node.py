"""Node-local container networking for real, in the netns lab: bridge, veth, IPAM, iptables.

Stand-in containers are plain network namespaces (`make_container_ns`); everything is created
inside the lab's namespaces and goes away with them.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest

from agent.errors import Conflict
from netplugin.attach import Attachment, attach, detach, host_veth_name
from netplugin.bridge import Bridge, ensure_bridge
from netplugin.dataplane.links import LinkError, Links
from netplugin.ipam import Ipam, gateway_of
from netplugin.ports import Published
from netplugin.rules import Rules
from tests.support.lab import ContainerNs, Lab, lab_names_in_use, make_container_ns

NETWORK = IPv4Network("10.44.0.0/16")
SUBNET = IPv4Network("10.44.1.0/24")
MTU = 1450
SWITCH_IP = IPv4Address("10.250.0.254")  # on the lab's switch: an address outside the cluster network

# Answers every TCP connection with the peer address it sees, so tests can tell what NAT did.
WHO_AM_I = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(16)
print("ready", flush=True)
while True:
    c, peer = s.accept()
    c.sendall(peer[0].encode() + b"\\n")
    c.close()
"""


@dataclass
class Node:
    lab: Lab
    links: Links
    ipam: Ipam
    rules: Rules
    bridge: Bridge

    def attach(self, container_id: str, ns: ContainerNs) -> Attachment:
        return attach(self.links, self.ipam, container_id, ns.path, self.bridge.name, MTU)


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab(hosts=2) as lab:
        lab.exec_ns(lab.switch, ["ip", "addr", "add", f"{SWITCH_IP}/{lab.network.prefixlen}", "dev", "br0"])
        yield lab


@pytest.fixture
def node(lab: Lab, tmp_path: Path) -> Iterator[Node]:
    host = lab.host(1)
    with Links(host.netns) as links:
        bridge = ensure_bridge(links, gateway=gateway_of(SUBNET), mtu=MTU)
        rules = Rules(host.netns)
        rules.ensure_cluster(NETWORK, SUBNET)
        yield Node(lab, links, Ipam(tmp_path / "ipam", SUBNET), rules, bridge)


def serve(lab: Lab, where: ContainerNs | str, ip: str, port: int) -> None:
    proc = lab.popen(
        where, [sys.executable, "-c", WHO_AM_I, ip, str(port)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"  # blocks until it listens


def ask(lab: Lab, where: int | ContainerNs, ip: IPv4Address, port: int) -> str:
    """Connect and return what the server said (its view of our address); '' if refused."""
    return lab.exec(where, ["busybox", "nc", "-w", "3", str(ip), str(port)], check=False).stdout.strip()


def ping(lab: Lab, where: int | ContainerNs, ip: IPv4Address) -> bool:
    return lab.exec(where, ["busybox", "ping", "-c", "1", "-W", "3", str(ip)], check=False).returncode == 0


def host_links(lab: Lab, host: int) -> list[str]:
    out = lab.exec(host, ["ip", "-o", "link", "show"]).stdout
    return sorted(line.split(":")[1].strip().split("@")[0] for line in out.splitlines())


def test_two_containers_on_one_host_talk_over_the_bridge(node: Node) -> None:
    lab = node.lab
    c1, c2 = make_container_ns(lab, 1), make_container_ns(lab, 1)
    a1, a2 = node.attach("one", c1), node.attach("two", c2)
    assert a1.ip.network == a2.ip.network == SUBNET and a1.ip != a2.ip
    assert a1.gateway == a2.gateway == IPv4Address("10.44.1.1")
    assert a1.host_veth == host_veth_name("one") and len(a1.host_veth) <= 15

    assert ping(lab, c1, a2.ip.ip)
    serve(lab, c2, "0.0.0.0", 7000)
    assert ask(lab, c1, a2.ip.ip, 7000) == str(a1.ip.ip)  # inside the cluster network: no NAT

    inside = lab.exec(c1, ["ip", "-o", "addr", "show", "dev", "eth0"]).stdout
    assert f"inet {a1.ip}" in inside
    assert f"mtu {MTU}" in lab.exec(c1, ["ip", "-o", "link", "show", "eth0"]).stdout
    assert lab.exec(c1, ["ip", "route", "show", "default"]).stdout.startswith(
        "default via 10.44.1.1 dev eth0"
    )
    host_side = lab.exec(1, ["ip", "-o", "link", "show", a1.host_veth]).stdout
    assert f"mtu {MTU}" in host_side and "master shoal0" in host_side and "state UP" in host_side
    assert "eth0" not in [n for n in host_links(lab, 1) if n.startswith("vs")]

    # Attaching again changes nothing: same address, same veth, traffic still flows.
    assert node.attach("one", c1) == a1
    assert node.links.names("vs") == sorted([a1.host_veth, a2.host_veth])
    assert ask(lab, c1, a2.ip.ip, 7000) == str(a1.ip.ip)


def test_ensure_bridge_is_idempotent_and_corrects_drift(node: Node) -> None:
    lab = node.lab
    lab.exec(1, ["ip", "addr", "add", "10.99.0.1/24", "dev", "shoal0"])  # e.g. left from an old subnet
    lab.exec(1, ["ip", "link", "set", "shoal0", "mtu", "1400", "down"])
    again = ensure_bridge(node.links, gateway=gateway_of(SUBNET), mtu=MTU)
    assert again == node.bridge
    shown = lab.exec(1, ["ip", "-o", "-4", "addr", "show", "dev", "shoal0"]).stdout
    assert "10.44.1.1/24" in shown and "10.99.0.1" not in shown
    link = lab.exec(1, ["ip", "-o", "link", "show", "shoal0"]).stdout
    assert f"mtu {MTU}" in link and ",UP" in link and node.bridge.mac in link


def test_250_containers_attach_and_detach_leave_nothing_behind(node: Node) -> None:
    lab = node.lab
    before = host_links(lab, 1)
    spaces = {f"ct{i}": make_container_ns(lab, 1) for i in range(250)}
    addresses = {cid: node.attach(cid, ns).ip for cid, ns in spaces.items()}
    assert len(set(addresses.values())) == 250
    assert len(node.links.names("vs")) == 250
    ids = list(spaces)
    for cid in ids[:25]:  # detached while the container still runs: detach deletes the veth (~20 ms)
        detach(node.links, node.ipam, cid)
    for ns in spaces.values():
        lab.del_container_ns(ns)
    for cid in ids[25:]:  # the usual order: the container's netns went first and took the veth along
        detach(node.links, node.ipam, cid)
    assert node.ipam.leaked() == {}
    assert node.links.names("vs") == []
    assert host_links(lab, 1) == before
    assert lab_names_in_use(lab.prefix) == sorted([lab.switch, *(h.netns for h in lab.all_hosts)])
    detach(node.links, node.ipam, "ct0")  # idempotent


def test_a_failed_attach_leaves_no_address_and_no_veth(node: Node, tmp_path: Path) -> None:
    with pytest.raises(LinkError, match=r"open network namespace .*no-such-netns: No such file or directory"):
        attach(node.links, node.ipam, "ghost", str(tmp_path / "no-such-netns"), "shoal0", MTU)
    assert node.ipam.allocations() == {}
    assert node.links.names("vs") == []
    ns = make_container_ns(node.lab, 1)
    with pytest.raises(LinkError, match="link nobridge not found"):
        attach(node.links, node.ipam, "lost", ns.path, "nobridge", MTU)
    assert node.ipam.allocations() == {}
    assert node.links.names("vs") == []


def test_published_port_answers_on_the_underlay_and_a_second_publish_is_refused(node: Node) -> None:
    lab = node.lab
    web, other = make_container_ns(lab, 1), make_container_ns(lab, 1)
    a_web, a_other = node.attach("web", web), node.attach("other", other)
    serve(lab, web, "0.0.0.0", 80)
    node.rules.publish(8080, "tcp", a_web.ip.ip, 80)
    node.rules.publish(8080, "tcp", a_web.ip.ip, 80)  # the same again: a no-op
    published = [Published(8080, "tcp", a_web.ip.ip, 80)]
    assert node.rules.all_published() == published

    host1, host2 = lab.host(1), lab.host(2)
    assert ask(lab, 2, host1.public_ip, 8080) == str(host2.public_ip)  # from another host
    assert ask(lab, 1, host1.public_ip, 8080) == str(host1.public_ip)  # from the node itself
    # From a container on the same node (hairpin): masqueraded to the gateway so replies come back.
    assert ask(lab, other, host1.public_ip, 8080) == str(a_web.gateway)

    with pytest.raises(
        Conflict, match=r"port 8080/tcp is already published on this node \(to 10\.44\.1\.\d+:80\)"
    ):
        node.rules.publish(8080, "tcp", a_other.ip.ip, 80)
    assert node.rules.all_published() == published
    node.rules.publish(8080, "udp", a_other.ip.ip, 80)  # another protocol is another port

    assert node.rules.unpublish_container(a_web.ip.ip) == published
    assert node.rules.all_published() == [Published(8080, "udp", a_other.ip.ip, 80)]
    assert ask(lab, 2, host1.public_ip, 8080) == ""
    assert node.rules.unpublish(8080, "udp", a_other.ip.ip, 80)
    assert not node.rules.unpublish(8080, "udp", a_other.ip.ip, 80)
    assert node.rules.all_published() == []


def test_traffic_leaving_the_cluster_network_is_masqueraded(node: Node) -> None:
    lab = node.lab
    c = make_container_ns(lab, 1)
    node.attach("out", c)
    serve(lab, lab.switch, str(SWITCH_IP), 9000)
    assert ask(lab, c, SWITCH_IP, 9000) == str(lab.host(1).public_ip)


def test_cluster_rules_are_idempotent_and_removable(node: Node) -> None:
    lab = node.lab
    first = _ours(lab, 1)
    assert "table ip shoal" in first and "SHOAL-FORWARD" in first
    node.rules.ensure_cluster(NETWORK, SUBNET)
    assert _ours(lab, 1) == first
    node.rules.publish(8080, "tcp", IPv4Interface("10.44.1.9/24").ip, 80)
    node.rules.ensure_cluster(NETWORK, SUBNET)  # must keep published ports
    assert len(node.rules.all_published()) == 1
    node.rules.remove_all()
    node.rules.remove_all()
    assert _ours(lab, 1) == ""
    assert _ours(lab, 2) == ""  # host 2 never touched


def _ours(lab: Lab, host: int) -> str:
    """Shoal's nftables table and iptables chains on `host`, as the tools print them."""
    tables = lab.exec(host, ["nft", "list", "tables"]).stdout
    table = lab.exec(host, ["nft", "list", "table", "ip", "shoal"]).stdout if "ip shoal" in tables else ""
    saved = lab.exec(host, ["iptables-save"]).stdout
    return table + "".join(f"{line}\n" for line in saved.splitlines() if "SHOAL" in line)
