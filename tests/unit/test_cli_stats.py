"""`shoal stats`: CPU % from two readings, rows, cells and the service filter (the pure parts)."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import pytest

from agent.models import ContainerCreate, ContainerInfo, ContainerState, ContainerStats
from controller.api.types import NodeInfo
from deploy.cli.stats import (
    Fleet,
    Sample,
    StatsRow,
    as_json,
    build_rows,
    cpu_percent,
    live_view,
    table_cells,
    wanted,
)

if TYPE_CHECKING:
    from controller.client import ControlClient


def info(cid: str, labels: dict[str, str] | None = None) -> ContainerInfo:
    return ContainerInfo(
        id=cid,
        name=f"c-{cid[:3]}",
        created="2026-01-01T00:00:00Z",
        image="busybox",
        image_id="sha256:" + "1" * 64,
        config=ContainerCreate(image="busybox", labels=labels or {}),
        args=["sleep", "1"],
        env=[],
        state=ContainerState(status="running", pid=5),
        mounts=[],
        rootfs="/x",
        log_path="/x/log",
    )


def sample(cid: str, cpu: float, at: float, node: str = "n1", limit: int | None = 64 << 20) -> Sample:
    labels = {"com.shoal.service.name": "web", "com.shoal.service.id": "svc1", "com.shoal.task.id": "t" + cid}
    stats = ContainerStats(
        id=cid,
        name=f"web.1.t{cid}",
        cpu_seconds=cpu,
        memory_working_set_bytes=16 << 20,
        memory_limit_bytes=limit,
        pids=2,
        network_rx_bytes=1500,
        network_tx_bytes=0,
    )
    return Sample(node, info(cid, labels), stats, at)


def test_cpu_percent_is_cpu_time_over_wall_time() -> None:
    assert cpu_percent(1.0, 10.0, 1.5, 11.0) == 50.0
    assert cpu_percent(1.0, 10.0, 3.0, 11.0) == 200.0  # two cores busy
    assert cpu_percent(1.0, 10.0, 1.0, 10.0) == 0.0  # no interval
    assert cpu_percent(5.0, 10.0, 0.2, 11.0) == 0.0  # restarted: a new cgroup counts from 0


def test_rows_compare_each_container_with_its_own_previous_reading() -> None:
    before = {s.stats.id: s for s in [sample("aaa", 1.0, 100.0), sample("bbb", 2.0, 100.0)]}
    now = [sample("bbb", 2.25, 100.5, node="n2"), sample("aaa", 1.1, 101.0), sample("ccc", 9.0, 101.0)]
    rows = build_rows(before, now)
    assert [(r.node, r.id, r.cpu_percent) for r in rows] == [
        ("n1", "aaa", 10.0),
        ("n1", "ccc", 0.0),
        ("n2", "bbb", 50.0),
    ]
    assert rows[0].service == "web" and rows[0].task == "taaa" and rows[0].memory_percent == 25.0
    assert as_json(rows[:1])[0]["network_rx_bytes"] == 1500


def test_cells_look_like_docker_stats() -> None:
    [row] = build_rows({}, [sample("a" * 64, 1.0, 1.0)])
    assert table_cells(row) == [
        "a" * 12,
        "web.1.t" + "a" * 64,
        "n1",
        "0.00%",
        "16MiB / 64MiB",
        "25.00%",
        "2",
        "1.5kB / 0B",
    ]
    [unlimited] = build_rows({}, [sample("b" * 64, 1.0, 1.0, limit=None)])
    assert table_cells(unlimited)[4:6] == ["16MiB / unlimited", "--"]
    assert unlimited.memory_percent is None


@pytest.mark.parametrize(
    ("labels", "services", "shown"),
    [
        ({}, None, True),
        ({}, frozenset({"web"}), False),
        ({"com.shoal.service.name": "web"}, frozenset({"web"}), True),
        ({"com.shoal.service.id": "svc1"}, frozenset({"svc1", "web"}), True),
        ({"com.shoal.service.name": "db"}, frozenset({"web"}), False),
    ],
)
def test_service_filter(labels: dict[str, str], services: frozenset[str] | None, shown: bool) -> None:
    assert wanted(info("abc", labels), services) is shown


def test_row_fields_are_the_json_contract() -> None:
    assert list(StatsRow.__dataclass_fields__) == [
        "id",
        "name",
        "node",
        "service",
        "task",
        "cpu_percent",
        "memory_usage_bytes",
        "memory_limit_bytes",
        "memory_percent",
        "pids",
        "network_rx_bytes",
        "network_tx_bytes",
    ]


def test_the_live_view_shrinks_only_the_name_column() -> None:
    rows = build_rows({}, [sample("a" * 64, 1.0, 1.0), sample("b" * 64, 1.0, 1.0, node="n2", limit=None)])
    wide = live_view(rows, 200).plain.splitlines()
    assert wide[1].split() == " ".join(table_cells(rows[0])).split()  # nothing cut at 200 columns
    narrow = live_view(rows, 120).plain.splitlines()
    assert all(len(line.rstrip()) <= 120 for line in narrow)
    name = narrow[1].split()[1]
    assert name.endswith("…") and "web.1.t".startswith(name[:7])
    assert narrow[2].split()[2:] == ["n2", "0.00%", "16MiB", "/", "unlimited", "--", "2", "1.5kB", "/", "0B"]


def test_a_node_whose_agent_moved_gets_a_client_for_the_new_address() -> None:
    fleet = Fleet(cast("ControlClient", None), None)
    try:
        node = NodeInfo(id="n1", hostname="h", address="127.0.0.1", nano_cpus=1, memory_bytes=1)
        old = fleet._agent(node.model_copy(update={"agent_api": "unix:///run/shoal-old/agent.sock"}))
        assert fleet._agent(node.model_copy(update={"agent_api": "unix:///run/shoal-old/agent.sock"})) is old
        new = fleet._agent(node.model_copy(update={"agent_api": "unix:///run/shoal-new/agent.sock"}))
        assert new is not old and new.target == "unix:///run/shoal-new/agent.sock"
    finally:
        fleet.close()
