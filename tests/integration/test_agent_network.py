"""The agent's containers on the node's bridge network, for real: runc containers in their own
namespaces, plugged into a lab host's bridge, talking over it and published on its underlay."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from agent.models import ContainerCreate
from agent.network import NETNS_DIR, netns_name
from netplugin.dataplane.links import Links
from netplugin.env import SubnetEnv
from netplugin.ipam import Ipam
from netplugin.rules import Rules
from tests.support.agent import AgentProcess, wait_for
from tests.support.lab import Lab
from tests.support.registry import Registry

NETWORK = IPv4Network("10.244.0.0/16")
SUBNET = IPv4Network("10.244.1.0/24")
SERVE = "echo hello > /tmp/index.html; exec httpd -f -p 80 -h /tmp"


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab(hosts=2) as lab:
        yield lab


@pytest.fixture
def agent(tmp_path: Path, lab: Lab, registry: Registry) -> Iterator[AgentProcess]:
    host = lab.host(1)
    # What netplugin does on the node before the agent uses its network: subnet.env and the rules.
    env = tmp_path / "subnet.env"
    env.write_text(SubnetEnv(network=NETWORK, subnet=SUBNET, mtu=1450).render())
    Rules(host.netns).ensure_cluster(NETWORK, SUBNET)
    flags = ["--network-env", str(env), "--network-netns", host.netns, "--stop-timeout", "1"]
    with AgentProcess(tmp_path, registry.host, flags) as a:
        yield a


def run(agent: AgentProcess, name: str, *args: str) -> str:
    return agent.cli("container", "run", "-d", "--name", name, *args).stdout.strip()


def fetch_from_a_container(agent: AgentProcess, url: str) -> str:
    """What `wget URL` prints in a short-lived container on the same node (removed afterwards)."""
    out = agent.cli("container", "run", "--name", "probe", "busybox", "wget", "-qO-", url, check=False)
    agent.cli("container", "rm", "-f", "probe", check=False)
    return out.stdout.strip()


def test_containers_talk_over_the_bridge_and_a_published_port_answers_on_the_underlay(
    agent: AgentProcess, lab: Lab, tmp_path: Path
) -> None:
    cid = run(agent, "web", "-p", "8080:80", "busybox", "sh", "-c", SERVE)
    ip = IPv4Address(agent.inspect("web")["ip_address"])
    assert ip in SUBNET and ip != next(SUBNET.hosts())  # the first address is the bridge's

    # Another container on the same node reaches it over the bridge.
    wait_for(
        lambda: fetch_from_a_container(agent, f"http://{ip}/") == "hello",
        timeout=20,
        interval=0.2,
        what="web over the bridge",
    )

    # Another lab host reaches the published port on this host's underlay address.
    underlay = lab.host(1).public_ip

    def fetched_from_host2() -> bool:
        out = lab.exec(2, ["busybox", "wget", "-qO-", f"http://{underlay}:8080/"], check=False)
        return out.stdout.strip() == "hello"

    wait_for(fetched_from_host2, timeout=20, interval=0.2, what="the published port from host 2")

    # The same host port again is refused, and the refused container leaves nothing behind.
    taken = agent.cli("container", "run", "-d", "-p", "8080:80", "busybox", "sleep", "30", check=False)
    assert taken.returncode == 1 and "8080" in taken.stderr and "Traceback" not in taken.stderr

    agent.cli("container", "rm", "-f", cid)
    ipam = Ipam(tmp_path / "state" / "network" / "ipam", SUBNET)
    assert ipam.allocations() == {}
    with Links(lab.host(1).netns) as links:
        assert links.names("vs") == []
    assert not any(p.name.startswith(f"shoal-{cid[:16]}") for p in Path("/run/netns").iterdir())
    assert Rules(lab.host(1).netns).all_published() == []
    assert agent.client().container_list(all=True) == []


def test_a_container_keeps_its_address_across_restarts_and_agent_restarts(agent: AgentProcess) -> None:
    run(agent, "keeper", "--restart", "always", "busybox", "sh", "-c", SERVE)
    before = agent.inspect("keeper")["ip_address"]
    agent.cli("container", "stop", "keeper")
    agent.cli("container", "start", "keeper")
    agent.kill9()
    agent.start()
    assert agent.inspect("keeper")["ip_address"] == before
    assert agent.state("keeper")["status"] == "running"

    wait_for(
        lambda: fetch_from_a_container(agent, f"http://{before}/") == "hello",
        timeout=20,
        interval=0.2,
        what="the restarted container on its old address",
    )


def test_250_containers_created_and_removed_leave_no_address_veth_or_netns(
    agent: AgentProcess, lab: Lab, tmp_path: Path
) -> None:
    client = agent.client()
    request = ContainerCreate(image="busybox", command=["sleep", "600"])

    def create_and_remove(_: int) -> tuple[str, str]:
        info = client.container_run(request, start=True)
        assert IPv4Address(info.ip_address) in SUBNET
        client.container_remove(info.id, force=True)
        return info.id, info.ip_address

    with ThreadPoolExecutor(4) as pool:
        made = list(pool.map(create_and_remove, range(250)))
    assert len(made) == 250
    assert client.container_list(all=True) == []
    assert Ipam(tmp_path / "state" / "network" / "ipam", SUBNET).allocations() == {}
    with Links(lab.host(1).netns) as links:
        assert links.names("vs") == []
    # Only our own containers' namespaces: other tests may run agents at the same time.
    assert not [cid for cid, _ in made if (NETNS_DIR / netns_name(cid)).exists()]
