"""The whole plugin as deployed: `shoal network config set`, one `shoal netplugin --netns` process per
lab host (real etcd), containers attached with netplugin.attach, TCP across hosts; SIGTERM and a
restart leave the kernel state and running flows alone."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from netplugin.attach import attach
from netplugin.dataplane.links import Links
from netplugin.env import SubnetEnv
from netplugin.ipam import Ipam
from tests.integration.test_overlay import ECHO_CLIENT, ECHO_SERVER, STREAM_CLIENT
from tests.support.agent import wait_for
from tests.support.etcd import EtcdServer
from tests.support.lab import ContainerNs, Lab, make_container_ns
from tests.support.netplugin import SHOAL, Daemon

PY = sys.executable


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with EtcdServer(Path(tmp_path_factory.mktemp("etcd"))) as server:
        yield server.endpoint


@pytest.fixture
def cluster(endpoint: str, tmp_path: Path) -> Iterator[tuple[Lab, list[Daemon], str]]:
    prefix = f"/shoaltest-{uuid.uuid4().hex[:8]}/network"
    subprocess.run(
        [
            SHOAL,
            "network",
            "config",
            "set",
            "--etcd",
            endpoint,
            "--prefix",
            prefix,
            "--network",
            "10.7.0.0/16",
        ],
        check=True,
        capture_output=True,
    )
    with Lab(hosts=3) as lab:
        daemons = [Daemon(h, tmp_path / h.netns) for h in lab.all_hosts]
        try:
            for d in daemons:
                d.base.mkdir()
                d.start(endpoint, prefix)
            yield lab, daemons, prefix
        finally:
            for d in daemons:
                d.stop()


def _container(lab: Lab, d: Daemon, env: SubnetEnv) -> tuple[ContainerNs, IPv4Address]:
    c = make_container_ns(lab, d.host)
    with Links(d.host.netns) as links:
        a = attach(links, Ipam(d.base / "ipam", env.subnet), c.name, c.path, "shoal0", env.mtu)
    return c, a.ip.ip


def test_daemons_connect_containers_across_hosts_and_survive_a_restart(
    cluster: tuple[Lab, list[Daemon], str], endpoint: str
) -> None:
    lab, daemons, prefix = cluster
    envs = [d.env() for d in daemons]
    assert len({e.subnet for e in envs}) == 3 and all(e.mtu == 1450 for e in envs)
    containers = [_container(lab, d, e) for d, e in zip(daemons, envs, strict=True)]
    for c, ip in containers:
        server = lab.popen(c, [PY, "-c", ECHO_SERVER, str(ip), "7000"], stdout=subprocess.PIPE)
        assert server.stdout is not None and server.stdout.readline().strip() == b"ready"

    def talks(src: int, dst: int, size: int = 100_000) -> bool:
        argv = [PY, "-c", ECHO_CLIENT, str(containers[dst][1]), "7000", str(size)]
        return lab.exec(containers[src][0], argv, check=False).returncode == 0

    wait_for(lambda: talks(0, 2, 1000) and talks(2, 1, 1000) and talks(1, 0, 1000), what="the overlay mesh")
    assert talks(0, 2) and talks(2, 1) and talks(1, 0)

    # SIGTERM host 1's plugin mid-stream and start it again: same subnet, flows undisturbed
    dump = [
        "sh",
        "-c",
        "ip -d link show shoal.1; ip route; ip neigh show dev shoal.1; bridge fdb show dev shoal.1",
    ]
    before = lab.exec(1, dump).stdout
    flow = lab.popen(
        containers[0][0], [PY, "-c", STREAM_CLIENT, str(containers[2][1]), "7000"], stdin=subprocess.PIPE
    )
    assert daemons[0].stop() == 0
    assert lab.exec(1, dump).stdout == before
    daemons[0].subnet_file.unlink()
    daemons[0].start(endpoint, prefix)
    assert daemons[0].env().subnet == envs[0].subnet
    assert lab.exec(1, dump).stdout == before
    assert flow.stdin is not None
    flow.stdin.close()
    assert flow.wait(timeout=60) == 0
    assert talks(1, 0) and talks(0, 1)
