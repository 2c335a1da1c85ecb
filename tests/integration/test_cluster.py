"""The control plane end to end: real etcd, real `shoal controller` processes, real agents running
busybox with runc, and hollow agents (the real agent code with the fake runtime) for the cases
that need many or oddly sized nodes."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from controller.api.types import Placement, ResourceAmounts, Resources, RestartPolicy, ServiceSpec, Task
from controller.client import ControlClient
from controller.store.etcd import EtcdStore
from tests.support.agent import AgentProcess, wait_for
from tests.support.cluster import ControllerProcess, HollowFleet, leader_id
from tests.support.etcd import EtcdServer
from tests.support.registry import Registry

GB = 1024**3
SLEEP = ["sleep", "600"]


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdServer]:
    with EtcdServer(tmp_path / "etcd") as server:
        yield server


@pytest.fixture
def store(etcd: EtcdServer) -> Iterator[EtcdStore]:
    s = EtcdStore([etcd.endpoint])
    yield s
    s.close()


@pytest.fixture
def controller(tmp_path: Path, etcd: EtcdServer) -> Iterator[ControllerProcess]:
    with ControllerProcess(tmp_path, etcd.endpoint, ["--node-grace", "1"]) as c:
        yield c


@pytest.fixture
def api(controller: ControllerProcess) -> Iterator[ControlClient]:
    with controller.client() as client:
        yield client


def start_agents(tmp_path: Path, etcd: EtcdServer, registry: Registry, count: int) -> list[AgentProcess]:
    agents = []
    try:
        for i in range(1, count + 1):
            base = tmp_path / f"n{i}"
            base.mkdir()
            cluster = [
                "--etcd",
                etcd.endpoint,
                "--node-id",
                f"n{i}",
                "--node-ttl",
                "3",
                "--stop-timeout",
                "1",
            ]
            agent = AgentProcess(base, registry.host, cluster)
            agents.append(agent)
            agent.start()
    except BaseException:
        for agent in agents:
            agent.teardown()
        raise
    return agents


@pytest.fixture
def agents(tmp_path: Path, etcd: EtcdServer, registry: Registry) -> Iterator[list[AgentProcess]]:
    started = start_agents(tmp_path, etcd, registry, 3)
    try:
        yield started
    finally:
        for agent in started:
            agent.teardown()


def hollow(tmp_path: Path, etcd: EtcdServer, count: int, prefix: str, *args: str) -> HollowFleet:
    return HollowFleet(tmp_path, etcd.endpoint, count, prefix, ["--ttl", "3", *args])


def spec(name: str, **fields: object) -> ServiceSpec:
    return ServiceSpec.model_validate({"name": name, "image": "busybox", "command": SLEEP, **fields})


def running(api: ControlClient, service: str) -> list[Task]:
    return [
        t for t in api.list_tasks(service=service) if t.desired_state == "running" and t.state == "running"
    ]


def per_node(tasks: list[Task]) -> Counter[str]:
    return Counter(t.node_id for t in tasks)


def containers_running(agents: list[AgentProcess], service: str) -> Counter[str]:
    """What the nodes really run: running containers of `service`, by node, asked of each agent."""
    counts: Counter[str] = Counter()
    for i, agent in enumerate(agents, start=1):
        for c in agent.client().container_list(all=False):
            if c.config.labels.get("com.shoal.service.name") == service and c.state.status == "running":
                counts[f"n{i}"] += 1
    return counts


def settle_on(api: ControlClient, service: str, expected: dict[str, int], timeout: float = 60) -> None:
    def matches() -> bool:
        return dict(per_node(running(api, service))) == expected

    wait_for(matches, timeout=timeout, interval=0.2, what=f"{service} running as {expected}")


def ready_nodes(api: ControlClient, count: int) -> None:
    wait_for(lambda: sum(n.ready for n in api.list_nodes()) == count, what=f"{count} ready nodes")


def test_replicas_spread_scale_and_remove(api: ControlClient, agents: list[AgentProcess]) -> None:
    ready_nodes(api, 3)
    api.create_service(spec("web", replicas=6))
    settle_on(api, "web", {"n1": 2, "n2": 2, "n3": 2})
    wait_for(lambda: containers_running(agents, "web") == {"n1": 2, "n2": 2, "n3": 2}, what="containers")

    api.update_service("web", spec("web", replicas=9))
    settle_on(api, "web", {"n1": 3, "n2": 3, "n3": 3})

    api.update_service("web", spec("web", replicas=2))
    wait_for(lambda: len(running(api, "web")) == 2, timeout=60, what="2 running tasks")
    wait_for(lambda: sum(containers_running(agents, "web").values()) == 2, timeout=60, what="2 containers")
    assert sorted(t.slot for t in running(api, "web")) == [1, 2]

    api.remove_service("web")
    wait_for(lambda: api.list_services() == [], what="the service gone")

    def nothing_left() -> bool:
        leftovers = [
            c
            for agent in agents
            for c in agent.client().container_list(all=True)
            if c.config.labels.get("com.shoal.service.name") == "web"
        ]
        return not leftovers and not api.list_tasks()

    wait_for(nothing_left, timeout=60, interval=0.2, what="no task and no container left")


def test_killed_agent_tasks_move_and_come_back_to_exactly_the_asked_count(
    api: ControlClient, agents: list[AgentProcess]
) -> None:
    ready_nodes(api, 3)
    api.create_service(spec("web", replicas=6))
    settle_on(api, "web", {"n1": 2, "n2": 2, "n3": 2})

    killed_at = time.monotonic()
    agents[2].kill9()  # its lease is no longer renewed; its containers keep running
    settle_on(api, "web", {"n1": 3, "n2": 3}, timeout=60)
    moved_after = time.monotonic() - killed_at
    print(f"\nagent kill -9 -> its tasks running elsewhere after {moved_after:.2f} s (ttl 3 s + grace 1 s)")

    agents[2].start()
    # The old copies on n3 were replaced: the returning agent stops them.
    wait_for(
        lambda: containers_running(agents, "web") == {"n1": 3, "n2": 3},
        timeout=60,
        interval=0.2,
        what="the replaced copies on n3 stopped",
    )
    assert len(running(api, "web")) == 6
    assert sorted(t.slot for t in running(api, "web")) == list(range(1, 7))


def test_job_runs_to_completion_with_bounded_parallelism(
    api: ControlClient, agents: list[AgentProcess]
) -> None:
    job = spec(
        "batch",
        mode="replicated-job",
        total_completions=5,
        max_concurrent=2,
        command=["sh", "-c", "sleep 0.5"],
        restart_policy=RestartPolicy(condition="on-failure"),
    )
    ready_nodes(api, 3)
    api.create_service(job)

    def completed() -> list[Task]:
        return [t for t in api.list_tasks(service="batch") if t.state == "complete" and t.exit_code == 0]

    wait_for(lambda: len(completed()) == 5, timeout=90, interval=0.2, what="5 completions")
    tasks = api.list_tasks(service="batch")
    assert sorted(t.slot for t in completed()) == [1, 2, 3, 4, 5]
    assert len(tasks) == 5, [(t.slot, t.state) for t in tasks]

    # When each container really ran, from the agents' own records: never more than 2 at once.
    spans = []
    for agent in agents:
        for c in agent.client().container_list(all=True):
            if c.config.labels.get("com.shoal.service.name") == "batch":
                spans.append((stamp(c.state.started_at), stamp(c.state.finished_at)))
    assert len(spans) == 5
    assert max_overlap(spans) <= 2


def stamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def max_overlap(spans: list[tuple[float, float]]) -> int:
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    level = peak = 0
    for _, step in edges:
        level += step
        peak = max(peak, level)
    return peak


def test_global_service_follows_the_nodes(tmp_path: Path, etcd: EtcdServer, api: ControlClient) -> None:
    with hollow(tmp_path, etcd, 3, "g"):
        api.create_service(spec("agent", mode="global"))
        wait_for(lambda: len(running(api, "agent")) == 3, timeout=30, what="one task per node")
        assert per_node(running(api, "agent")) == {"g1": 1, "g2": 1, "g3": 1}
        with hollow(tmp_path, etcd, 1, "late"):
            wait_for(lambda: len(running(api, "agent")) == 4, timeout=30, what="a task on the new node")
            assert per_node(running(api, "agent"))["late1"] == 1


def test_unplaceable_reservation_waits_with_reasons_then_runs_on_a_big_node(
    tmp_path: Path, etcd: EtcdServer, api: ControlClient
) -> None:
    big = Resources(reservations=ResourceAmounts(memory_bytes=4 * GB))
    with hollow(tmp_path, etcd, 3, "small", "--memory", "1g"):
        api.create_service(spec("db", resources=big))

        def pending_reason() -> str:
            tasks = api.list_tasks(service="db")
            return tasks[0].message if tasks and tasks[0].state == "pending" else ""

        wait_for(lambda: "insufficient memory on 3 nodes" in pending_reason(), timeout=30, what="reasons")
        assert pending_reason().startswith("no suitable node (")
        with hollow(tmp_path, etcd, 1, "big", "--memory", "8g"):
            wait_for(lambda: per_node(running(api, "db")) == {"big1": 1}, timeout=30, what="placed")


def test_constraints_max_per_node_and_drain(tmp_path: Path, etcd: EtcdServer, api: ControlClient) -> None:
    with hollow(tmp_path, etcd, 4, "c"):
        for node in ("c1", "c2"):
            api.update_node(node, label_add={"disk": "ssd"})
        placement = Placement(constraints=["node.labels.disk==ssd"], max_replicas_per_node=1)
        api.create_service(spec("cache", replicas=3, placement=placement))
        wait_for(lambda: per_node(running(api, "cache")) == {"c1": 1, "c2": 1}, timeout=30, what="ssd only")
        pending = [t for t in api.list_tasks(service="cache") if t.state == "pending"]
        assert len(pending) == 1
        assert "max replicas per node" in pending[0].message
        assert "constraint node.labels.disk==ssd not satisfied on 2 nodes" in pending[0].message

        api.update_node("c2", availability="drain")
        wait_for(lambda: per_node(running(api, "cache")) == {"c1": 1}, timeout=30, what="c2 drained")
        assert all(t.node_id != "c2" for t in api.list_tasks(node="c2") if t.state == "running")
        api.update_node("c2", availability="active")
        wait_for(lambda: per_node(running(api, "cache")) == {"c1": 1, "c2": 1}, timeout=30, what="c2 back")


def test_leader_killed_while_scaling_another_takes_over_and_ends_with_exact_slots(
    tmp_path: Path, etcd: EtcdServer, store: EtcdStore
) -> None:
    flags = ["--node-grace", "1", "--leader-ttl", "2"]
    with (
        ControllerProcess(tmp_path, etcd.endpoint, flags, name="ctl-a") as a,
        ControllerProcess(tmp_path, etcd.endpoint, flags, name="ctl-b") as b,
        hollow(tmp_path, etcd, 10, "f"),
    ):
        wait_for(lambda: leader_id(store) in (a.id, b.id), what="a leader")
        leader, follower = (a, b) if leader_id(store) == a.id else (b, a)
        with follower.client() as api:
            api.create_service(spec("web", replicas=0))
            api.update_service("web", spec("web", replicas=50))
            leader.kill9()
            killed_at = time.monotonic()
            wait_for(lambda: leader_id(store) == follower.id, timeout=15, interval=0.02, what="takeover")
            print(f"\nleader kill -9 -> {follower.id} leads after {time.monotonic() - killed_at:.2f} s")

            wait_for(lambda: len(running(api, "web")) == 50, timeout=60, interval=0.2, what="50 running")
            live = [t for t in api.list_tasks(service="web") if t.desired_state == "running"]
            assert sorted(t.slot for t in live) == list(range(1, 51))
