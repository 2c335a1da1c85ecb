"""`shoal netplugin` for real: three nodes of a namespace lab on one etcd, each a daemon process.

The processes stay in the root namespace (next to etcd on loopback) and program their node's
namespace through --netns; teardown stops them by pid and the lab deletes every namespace.
"""

from __future__ import annotations

import json
import signal
import subprocess
import uuid
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from controller.store.etcd import EtcdStore
from netplugin.env import SubnetEnv, read_subnet_env
from netplugin.subnet import keyspace
from tests.support.agent import SHOAL, wait_for
from tests.support.etcd import EtcdServer
from tests.support.lab import Lab, LabHost

NETWORK = "10.244.0.0/16"
START = 30.0  # a cold start imports pyroute2 and etcd3 on a noisy 2-core machine


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with EtcdServer(Path(tmp_path_factory.mktemp("etcd"))) as server:
        yield server.endpoint


@pytest.fixture
def prefix() -> str:
    return f"/shoaltest-{uuid.uuid4().hex[:12]}/network"


def shoal(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SHOAL, *args], capture_output=True, text=True, timeout=60)


class Plugin:
    def __init__(self, base: Path, endpoint: str, prefix: str, host: LabHost) -> None:
        self.host = host
        self.dir = base / host.netns
        self.subnet_file = self.dir / "subnet.env"
        self.log = self.dir / "netplugin.log"
        self.argv = [
            SHOAL,
            "netplugin",
            "--etcd",
            endpoint,
            "--prefix",
            prefix,
            "--public-ip",
            str(host.public_ip),
            "--netns",
            host.netns,
            "--lease-ttl",
            "5",
            "--state-dir",
            str(self.dir / "state"),
            "--subnet-file",
            str(self.subnet_file),
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT)

    def running(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"netplugin on {self.host.netns} is not running:\n{self.log.read_text()}")
        return True

    def wait_up(self) -> SubnetEnv:
        wait_for(lambda: self.running() and self.subnet_file.exists(), START, what=f"{self.host.netns} up")
        env = read_subnet_env(self.subnet_file)
        assert env is not None
        return env

    def stop(self) -> int:
        """SIGTERM by pid, as a supervisor would; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"netplugin ignored SIGTERM:\n{self.log.read_text()}") from None


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab(hosts=3) as lab:
        yield lab


@pytest.fixture
def plugins(tmp_path: Path, endpoint: str, prefix: str, lab: Lab) -> Iterator[list[Plugin]]:
    ps = [Plugin(tmp_path, endpoint, prefix, host) for host in lab.all_hosts]
    try:
        yield ps
    finally:
        for p in ps:
            if p.proc is not None and p.proc.poll() is None:
                p.proc.kill()
                p.proc.wait()


def link(lab: Lab, host: LabHost, name: str) -> dict[str, Any]:
    out = lab.exec(host, ["ip", "-j", "-d", "addr", "show", "dev", name]).stdout
    [info] = json.loads(out)
    assert isinstance(info, dict)
    return info


def addresses(info: dict[str, Any]) -> set[IPv4Interface]:
    return {
        IPv4Interface(f"{a['local']}/{a['prefixlen']}")
        for a in info.get("addr_info", [])
        if a["family"] == "inet"
    }


def test_three_nodes_lease_distinct_subnets_and_reach_each_other(
    endpoint: str, prefix: str, lab: Lab, plugins: list[Plugin]
) -> None:
    # A node started before the config exists waits for it.
    plugins[0].start()
    wait_for(
        lambda: plugins[0].running() and "waiting for the network config" in plugins[0].log.read_text(),
        START,
        what="the first node to wait for the config",
    )
    written = shoal("network", "config", "set", "--etcd", endpoint, "--prefix", prefix, "--network", NETWORK)
    assert written.returncode == 0, written.stderr
    assert json.loads(written.stdout) == {"Network": NETWORK, "SubnetLen": 24, "Backend": {"Type": "vxlan"}}
    got = shoal("network", "config", "get", "--etcd", endpoint, "--prefix", prefix)
    assert (got.returncode, json.loads(got.stdout)) == (0, json.loads(written.stdout))
    for p in plugins[1:]:
        p.start()
    envs = [p.wait_up() for p in plugins]

    subnets = [env.subnet for env in envs]
    assert len(set(subnets)) == 3
    for env in envs:
        assert env.network == IPv4Network(NETWORK) and env.subnet.subnet_of(env.network)
        assert (env.subnet.prefixlen, env.mtu, env.ipmasq) == (24, 1500 - 50, True)

    store = EtcdStore([endpoint])
    try:
        kvs, _ = store.list(keyspace.subnets_prefix(prefix))
    finally:
        store.close()
    leases = {keyspace.parse_subnet_key(prefix, kv.key): json.loads(kv.value) for kv in kvs}
    assert {sn: v["PublicIP"] for sn, v in leases.items()} == {
        env.subnet: str(p.host.public_ip) for env, p in zip(envs, plugins, strict=True)
    }
    assert all(v["BackendType"] == "vxlan" and v["BackendData"]["VNI"] == 1 for v in leases.values())
    assert all(kv.lease != 0 for kv in kvs), "every lease key lives on a TTL lease"

    for env, p in zip(envs, plugins, strict=True):
        bridge = link(lab, p.host, "shoal0")
        assert addresses(bridge) == {env.gateway}
        assert bridge["mtu"] == env.mtu
        vtep = link(lab, p.host, "shoal.1")
        assert vtep["linkinfo"]["info_kind"] == "vxlan"
        assert vtep["address"] == leases[env.subnet]["BackendData"]["VtepMAC"]

    # Across the overlay: node 1 reaches node 3's bridge (routes come from the lease watch).
    target = str(envs[2].gateway.ip)
    wait_for(
        lambda: (
            lab.exec(
                plugins[0].host, ["busybox", "ping", "-c", "1", "-W", "1", target], check=False
            ).returncode
            == 0
        ),
        START,
        what=f"node 1 to reach {target} over vxlan",
    )

    # A restart keeps the subnet and does not recreate the bridge.
    index_before = link(lab, plugins[0].host, "shoal0")["ifindex"]
    assert plugins[0].stop() == 0
    assert "netplugin stopped" in plugins[0].log.read_text()
    plugins[0].subnet_file.unlink()
    plugins[0].start()
    assert plugins[0].wait_up() == envs[0]
    assert link(lab, plugins[0].host, "shoal0")["ifindex"] == index_before
    assert (
        lab.exec(plugins[0].host, ["busybox", "ping", "-c", "1", "-W", "2", target], check=False).returncode
        == 0
    )


def test_an_invalid_config_stops_the_daemon_with_one_line(endpoint: str, prefix: str, tmp_path: Path) -> None:
    store = EtcdStore([endpoint])
    try:
        store.put(keyspace.config_key(prefix), b'{"Network": "10.244.0.0/16", "SubnetLen": 12}')
    finally:
        store.close()
    got = shoal("network", "config", "get", "--etcd", endpoint, "--prefix", prefix)
    assert got.returncode == 3
    assert got.stderr.startswith("Error: invalid SubnetLen 12: must be between 18 and 30")
    # Refused before any kernel state is touched, so no namespace is needed.
    result = shoal(
        "netplugin",
        "--etcd",
        endpoint,
        "--prefix",
        prefix,
        "--public-ip",
        str(IPv4Address("10.250.0.1")),
        "--state-dir",
        str(tmp_path / "state"),
        "--subnet-file",
        str(tmp_path / "subnet.env"),
    )
    assert result.returncode == 3
    assert result.stderr.splitlines()[-1].startswith("Error: invalid SubnetLen 12: must be between 18 and 30")
    assert not (tmp_path / "subnet.env").exists()
