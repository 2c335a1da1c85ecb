"""The agent's metrics: net/dev parsing, cgroup keyed files, series built from samples, the registry."""

from __future__ import annotations

import os
import socket
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric

from agent.errors import NotFound, Unavailable
from agent.metrics import (
    AgentMetrics,
    ContainerCollector,
    ContainerSample,
    ContainerView,
    container_families,
    metric_names,
    parse_time,
    state_counts,
    view_of,
)
from agent.metrics_server import serve_metrics
from agent.models import ContainerCreate, ContainerState, ContainerStatus
from agent.node import Record
from agent.runtime.cgroups import CgroupStats, keyed_value
from agent.runtime.netdev import NetCounters, parse_net_dev, read_net_dev
from tests.support.metrics import parse, scrape, value, values

NET_DEV = (
    "Inter-|   Receive                                                |  Transmit\n"
    " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop ...\n"
    "    lo:     840      10    0    0    0     0          0         0      840      10    0    0 0 0 0 0\n"
    "  eth0: 1339307    386    0    0    0     0          0         0  2198099   208    0    0 0 0 0 0\n"
)

CATALOG = {
    "shoal_build_info",
    "shoal_container_cpu_usage_seconds_total",
    "shoal_container_memory_working_set_bytes",
    "shoal_container_memory_limit_bytes",
    "shoal_container_pids",
    "shoal_container_network_receive_bytes_total",
    "shoal_container_network_transmit_bytes_total",
    "shoal_container_oom_kills_total",
    "shoal_container_restarts_total",
    "shoal_container_start_time_seconds",
    "shoal_agent_containers",
    "shoal_container_restart_backoff_seconds",
    "shoal_image_pull_duration_seconds",
    "shoal_image_pull_bytes_total",
    "shoal_image_pulls_total",
    "shoal_health_checks_total",
}


def test_net_dev_parsing() -> None:
    assert parse_net_dev(NET_DEV) == NetCounters(1339307, 2198099)
    assert parse_net_dev(NET_DEV, "lo") == NetCounters(840, 840)
    only_lo = "\n".join(NET_DEV.splitlines()[:3])
    assert parse_net_dev(only_lo) == NetCounters()  # network none: no eth0
    assert parse_net_dev("") == NetCounters()
    assert parse_net_dev(NET_DEV.replace("1339307", "x")) == NetCounters()  # unreadable: zeros


def test_net_dev_of_a_real_process_counts_its_traffic() -> None:
    """The real file, read for our own pid: loopback traffic we send shows up on lo."""
    before = read_net_dev(os.getpid(), "lo")
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
    ):
        rx.bind(("127.0.0.1", 0))
        tx.sendto(b"x" * 50_000, rx.getsockname())
        rx.recv(65536)
    after = read_net_dev(os.getpid(), "lo")
    assert after.rx_bytes >= before.rx_bytes + 50_000 and after.tx_bytes >= before.tx_bytes + 50_000


def test_net_dev_of_a_gone_process_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        read_net_dev(12345, proc=tmp_path)
    with pytest.raises(NotFound):
        read_net_dev(0)


def test_keyed_values_match_whole_keys_at_line_starts() -> None:
    stat = "cache 5\ninactive_file 7\ntotal_inactive_file 200000\n"
    assert keyed_value(stat, "total_inactive_file") == 200000
    assert keyed_value(stat, "inactive_file") == 7
    assert keyed_value("total_inactive_file 9\n", "inactive_file") == 0
    assert keyed_value("oom_kill_disable 0\noom_kill 2\n", "oom_kill") == 2
    assert keyed_value("oom_kill x\n", "oom_kill") == 0


def test_state_counts_fold_agent_statuses_into_docker_states() -> None:
    counts = state_counts(["running", "restarting", "exited", "dead", "created"])
    assert counts == {"running": 2, "exited": 2, "created": 1, "paused": 0}
    assert state_counts([]) == {"running": 0, "exited": 0, "created": 0, "paused": 0}


def _view(n: int) -> ContainerView:
    return ContainerView(
        id=f"{n:064x}",
        name=f"web.{n}.t{n}",
        image="reg:5000/busybox",
        service="web",
        task=f"t{n}",
        status="running",
        pid=100 + n,
        restarts=n,
        started_at=1700000000.5,
        cgroups_path=f"/shoaltest/{n}",
        host_network=False,
    )


def test_series_are_built_from_samples() -> None:
    samples = [
        ContainerSample(_view(1), CgroupStats(2.5, 1000, 64 << 20, 3), 1, NetCounters(10, 20)),
        ContainerSample(
            replace(_view(2), service="", task=""), CgroupStats(0.5, 2000, None, 1), 0, NetCounters()
        ),
    ]
    registry = CollectorRegistry()
    registry.register(_Static(container_families(samples, {"running": 2, "exited": 1})))
    s = parse(generate_latest(registry).decode())
    one = {"id": f"{1:064x}", "name": "web.1.t1", "image": "reg:5000/busybox", "service": "web", "task": "t1"}
    assert value(s, "shoal_container_cpu_usage_seconds_total", **one) == 2.5
    assert value(s, "shoal_container_memory_working_set_bytes", **one) == 1000
    assert value(s, "shoal_container_memory_limit_bytes", **one) == 64 << 20
    assert value(s, "shoal_container_pids", **one) == 3
    assert value(s, "shoal_container_network_receive_bytes_total", **one) == 10
    assert value(s, "shoal_container_network_transmit_bytes_total", **one) == 20
    assert value(s, "shoal_container_oom_kills_total", **one) == 1
    assert value(s, "shoal_container_restarts_total", **one) == 1
    assert value(s, "shoal_container_start_time_seconds", **one) == 1700000000.5
    plain = {"name": "web.2.t2", "service": "", "task": ""}
    assert value(s, "shoal_container_memory_limit_bytes", **plain) == 0  # unlimited
    assert value(s, "shoal_agent_containers", state="running") == 2
    assert value(s, "shoal_agent_containers", state="paused") == 0


class _Static:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def _record(cid: str, status: ContainerStatus, pid: int, labels: dict[str, str] | None = None) -> Record:
    return Record(
        id=cid,
        name=f"c-{cid[:4]}",
        created="2026-01-01T00:00:00Z",
        image="reg:5000/busybox:1",
        image_id="sha256:" + "1" * 64,
        config=ContainerCreate(image="reg:5000/busybox:1", labels=labels or {}),
        args=["sleep", "1"],
        env=[],
        cwd="/",
        uid=0,
        gid=0,
        additional_gids=[],
        stop_signal="SIGTERM",
        cgroups_path=f"/shoaltest-gone/{cid}",
        state=ContainerState(status=status, pid=pid, restart_count=3, started_at="2026-01-01T00:00:01.5Z"),
    )


def test_view_of_a_record_takes_the_task_labels() -> None:
    labels = {"com.shoal.service.name": "web", "com.shoal.task.id": "abc", "other": "x"}
    v = view_of(_record("a" * 64, "running", 42, labels))
    assert (v.service, v.task, v.pid, v.restarts, v.image) == ("web", "abc", 42, 3, "reg:5000/busybox:1")
    assert v.started_at == parse_time("2026-01-01T00:00:01.5Z") == 1767225601.5
    assert parse_time("") == 0.0 and parse_time("garbage") == 0.0


def test_collector_skips_containers_that_are_gone_but_counts_their_state() -> None:
    records = [_record("a" * 64, "running", 2**22 + 7), _record("b" * 64, "exited", 0)]
    families = {f.name: f for f in ContainerCollector(lambda: records).collect()}
    assert families["shoal_container_pids"].samples == []  # its cgroup and process are gone
    counts = {s.labels["state"]: s.value for s in families["shoal_agent_containers"].samples}
    assert counts == {"running": 1, "exited": 1, "created": 0, "paused": 0}


def test_registry_names_every_catalog_metric_and_hooks_count() -> None:
    assert metric_names() == CATALOG
    m = AgentMetrics()
    described = {f.name for f in m.containers.describe()}
    assert "shoal_container_pids" in described and all(not f.samples for f in m.containers.describe())
    m.observe_pull(1.5, 4096, ok=True)
    m.observe_pull(0.1, 0, ok=False)
    m.observe_restart_backoff(0.4)
    m.observe_health(True)
    s = parse(generate_latest(m.registry).decode())
    assert value(s, "shoal_image_pulls_total", result="success") == 1
    assert value(s, "shoal_image_pulls_total", result="error") == 1
    assert value(s, "shoal_image_pull_bytes_total") == 4096
    assert value(s, "shoal_image_pull_duration_seconds_count") == 2
    assert value(s, "shoal_container_restart_backoff_seconds_bucket", le="0.4") == 1
    assert value(s, "shoal_health_checks_total", result="success") == 1
    assert value(s, "shoal_health_checks_total", result="failure") == 0
    assert values(s, "shoal_build_info", component="agent")


def test_listen_serves_and_a_taken_port_is_one_clear_error() -> None:
    m = AgentMetrics()
    server = serve_metrics("127.0.0.1:0", m.registry)
    try:
        assert "shoal_agent_containers" in scrape(server.url)
        with pytest.raises(Unavailable, match=rf"--metrics-address 127.0.0.1:{server.port}: cannot listen"):
            serve_metrics(f"127.0.0.1:{server.port}", AgentMetrics().registry)
    finally:
        server.close()
