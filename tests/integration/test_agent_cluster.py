"""The agent in a cluster, for real: etcd (EtcdServer), `shoal agent --etcd` processes with runc,
and a hollow fleet process. Assignments are written by hand, as the leader would write them."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.errors import NotFound
from controller.api import keyspace
from controller.api.types import Assignment, NodeInfo, ServiceSpec, Task, TaskStatus
from controller.store.base import KeyValue
from controller.store.etcd import EtcdStore
from tests.support.agent import AgentProcess, wait_for
from tests.support.cluster import HollowFleet
from tests.support.etcd import EtcdServer
from tests.support.registry import Registry

TTL = 2.0
WAIT = 30.0


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    with EtcdServer(tmp_path_factory.mktemp("etcd")) as server:
        yield server


@pytest.fixture
def store(etcd: EtcdServer) -> Iterator[EtcdStore]:
    s = EtcdStore([etcd.endpoint])
    yield s
    s.close()


def make_assignment(
    node_id: str, slot: int, image: str = "busybox", command: list[str] | None = None
) -> Assignment:
    service = f"svc{uuid.uuid4().hex[:6]}"
    task = Task(
        id=uuid.uuid4().hex[:16],
        service_id=f"id-{service}",
        service_name=service,
        spec_version=1,
        slot=slot,
        node_id=node_id,
        state="assigned",
    )
    return Assignment(task=task, spec=ServiceSpec(name=service, image=image, command=command))


def put_assignment(store: EtcdStore, a: Assignment) -> None:
    store.put(keyspace.assignment_key(a.task.node_id, a.task.id), keyspace.encode(a))


def status_kv(store: EtcdStore, a: Assignment) -> KeyValue | None:
    return store.get(keyspace.status_key(a.task.node_id, a.task.id))


def status(store: EtcdStore, a: Assignment) -> TaskStatus | None:
    kv = status_kv(store, a)
    return keyspace.decode(TaskStatus, kv.key, kv.value) if kv else None


def wait_state(store: EtcdStore, a: Assignment, state: str) -> TaskStatus:
    def reached() -> bool:
        s = status(store, a)
        return s is not None and s.state == state

    wait_for(reached, timeout=WAIT, what=f"task {a.task.id} to report {state}")
    s = status(store, a)
    assert s is not None
    return s


def test_agent_registers_runs_assignments_and_survives_a_restart(
    tmp_path: Path, registry: Registry, etcd: EtcdServer, store: EtcdStore
) -> None:
    agent = AgentProcess(
        tmp_path,
        registry.host,
        ["--stop-timeout", "1", "--node-label", "zone=a"],
        etcd=etcd.endpoint,
        node_ttl=TTL,
    )
    node = agent.node_id
    with agent:
        # Registration: the node record and its liveness key on a lease.
        wait_for(lambda: store.get(keyspace.alive_key(node)) is not None, timeout=WAIT, what="the alive key")
        kv = store.get(keyspace.node_key(node))
        assert kv is not None
        info = keyspace.decode(NodeInfo, kv.key, kv.value)
        assert (info.id, info.address, info.labels) == (node, "127.0.0.1", {"zone": "a"})
        assert info.nano_cpus > 0 and info.memory_bytes > 0

        # An assignment runs: status running with the container's id.
        first = make_assignment(node, 1, command=["sleep", "30"])
        put_assignment(store, first)
        running = wait_state(store, first, "running")
        container = agent.inspect(running.container_id)
        assert container["name"] == f"{first.task.service_name}.1.{first.task.id}"
        assert container["state"]["status"] == "running"
        assert container["config"]["labels"]["com.shoal.task.id"] == first.task.id

        # Desired shutdown: stopped, kept as history, reported shutdown.
        down = first.model_copy(update={"task": first.task.model_copy(update={"desired_state": "shutdown"})})
        put_assignment(store, down)
        stopped = wait_state(store, first, "shutdown")
        assert stopped.container_id == running.container_id
        assert agent.state(running.container_id)["status"] == "exited"

        # Assignment deleted (with its status, as the leader does): the container is removed.
        store.delete(keyspace.assignment_key(node, first.task.id))
        store.delete(keyspace.status_key(node, first.task.id))

        def removed() -> bool:
            try:
                agent.client().container_inspect(running.container_id)
            except NotFound:
                return True
            return False

        wait_for(removed, timeout=WAIT, what="the container of the deleted assignment to go")
        assert status(store, first) is None  # no status resurrected for the deleted task

        # kill -9: the liveness key runs out with the lease; the container keeps running.
        second = make_assignment(node, 2, command=["sleep", "30"])
        put_assignment(store, second)
        before = wait_state(store, second, "running")
        before_kv = status_kv(store, second)
        assert before_kv is not None
        pid = agent.state(before.container_id)["pid"]
        agent.kill9()
        wait_for(
            lambda: store.get(keyspace.alive_key(node)) is None,
            timeout=TTL + 5,
            what="the alive key to expire after kill -9",
        )

        # Restarted: alive again, the container adopted as it was, no new status for it.
        agent.start()
        wait_for(lambda: store.get(keyspace.alive_key(node)) is not None, timeout=WAIT, what="alive again")
        third = make_assignment(node, 3, command=["sleep", "30"])
        put_assignment(store, third)
        wait_state(store, third, "running")  # the worker has synced the whole node since
        assert agent.state(before.container_id)["pid"] == pid
        assert status_kv(store, second) == before_kv


def test_a_bad_image_is_rejected(
    tmp_path: Path, registry: Registry, etcd: EtcdServer, store: EtcdStore
) -> None:
    with AgentProcess(tmp_path, registry.host, etcd=etcd.endpoint, node_ttl=TTL) as agent:
        bad = make_assignment(agent.node_id, 1, image="invalid/nothing-here")
        put_assignment(store, bad)
        rejected = wait_state(store, bad, "rejected")
        assert "invalid/nothing-here" in rejected.message


def test_hollow_fleet_registers_runs_and_stops_on_sigterm(
    tmp_path: Path, store: EtcdStore, etcd: EtcdServer
) -> None:
    prefix = f"hollow{uuid.uuid4().hex[:6]}-"
    fleet = HollowFleet(tmp_path, etcd.endpoint, 50, prefix, ["--ttl", "30"])
    with fleet:
        ids = fleet.node_ids
        alive = {keyspace.last_component(kv.key) for kv in store.list(keyspace.ALIVE + prefix)[0]}
        nodes = {keyspace.last_component(kv.key) for kv in store.list(keyspace.NODES + prefix)[0]}
        assert alive == set(ids) == nodes

        a = make_assignment(ids[6], 1)
        put_assignment(store, a)
        s = wait_state(store, a, "running")
        assert s.container_id

        assert fleet.proc is not None
        fleet.proc.send_signal(signal.SIGTERM)
        assert fleet.proc.wait(timeout=WAIT) == 0, fleet.log()
    # Leases were not revoked: the nodes go down only when their TTL runs out.
    assert len(store.list(keyspace.ALIVE + prefix)[0]) == 50
