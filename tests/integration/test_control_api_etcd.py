"""The controller API over real gRPC against a real etcd 3.4 (the core of tests/unit/test_control_api.py)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.errors import Conflict, InvalidArgument, NotFound
from controller.api import keyspace as ks
from controller.api.server import serve
from controller.api.types import Assignment, NodeInfo, Service, ServiceSpec, Task, TaskStatus
from controller.api.views import ClusterEvent
from controller.client import ControlClient
from controller.store.base import Put
from controller.store.etcd import EtcdStore
from tests.support.etcd import EtcdServer

WAIT = 10.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EtcdStore]:
    # One etcd per test: the keyspace is fixed (/shoal/v1), so tests must not share one.
    with EtcdServer(tmp_path) as etcd:
        s = EtcdStore([etcd.endpoint])
        try:
            yield s
        finally:
            s.close()


@pytest.fixture
def client(store: EtcdStore) -> Iterator[ControlClient]:
    srv = serve(store, "127.0.0.1:0")
    try:
        with ControlClient(srv.address, timeout=WAIT) as c:
            yield c
    finally:
        srv.stop(0)


def web(replicas: int = 2) -> ServiceSpec:
    return ServiceSpec(name="web", image="busybox", replicas=replicas)


def add_node(store: EtcdStore, node_id: str, hostname: str) -> int:
    info = NodeInfo(id=node_id, hostname=hostname, address="10.0.0.1", nano_cpus=10**9, memory_bytes=1 << 30)
    store.put(ks.node_key(node_id), ks.encode(info))
    lease = store.grant_lease(30)
    store.put(ks.alive_key(node_id), b"", lease=lease.id)
    return lease.id


def test_services_create_update_remove(client: ControlClient) -> None:
    created = client.create_service(web())
    assert client.inspect_service("web") == created
    with pytest.raises(Conflict, match=r"^service web already exists$"):
        client.create_service(web(3))
    updated = client.update_service("web", web(3), version=1)
    assert updated.version == 2
    with pytest.raises(Conflict, match=r"^update out of sequence: service web is at version 2$"):
        client.update_service("web", web(4), version=1)
    [summary] = client.list_services()
    assert (summary.service, summary.desired) == (updated, 3)
    client.remove_service("web")
    with pytest.raises(NotFound):
        client.inspect_service("web")


def test_concurrent_guarded_updates_one_wins(client: ControlClient, store: EtcdStore) -> None:
    client.create_service(web(1))
    results: queue.Queue[Service | Exception] = queue.Queue()
    barrier = threading.Barrier(4)

    def update(replicas: int) -> None:
        barrier.wait()
        try:
            results.put(client.update_service("web", web(replicas), version=1))
        except Exception as exc:
            results.put(exc)

    threads = [threading.Thread(target=update, args=(r,)) for r in range(2, 6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    outcomes = [results.get_nowait() for _ in threads]
    winners = [o for o in outcomes if isinstance(o, Service)]
    assert len(winners) == 1 and winners[0].version == 2
    assert all(isinstance(o, Conflict) for o in outcomes if o not in winners)
    assert client.inspect_service("web") == winners[0]


def test_tasks_merge_a_status_written_by_hand(client: ControlClient, store: EtcdStore) -> None:
    svc = client.create_service(web())
    add_node(store, "n1", "h1")
    t = Task(
        id="t1", service_id=svc.id, service_name="web", spec_version=1, slot=1, node_id="n1", state="assigned"
    )
    store.txn(
        [],
        [
            Put(ks.task_key(t), ks.encode(t)),
            Put(ks.assignment_key("n1", "t1"), ks.encode(Assignment(task=t, spec=svc.spec))),
        ],
    )
    assert [(x.id, x.state) for x in client.list_tasks(service="web")] == [("t1", "assigned")]
    status = TaskStatus(
        task_id="t1", state="running", restarts=1, container_id="c1", timestamp="2030-01-01T00:00:00Z"
    )
    store.put(ks.status_key("n1", "t1"), ks.encode(status))
    [merged] = client.list_tasks(node="h1")
    assert (merged.state, merged.restarts, merged.container_id) == ("running", 1, "c1")
    assert client.list_services()[0].running == 1


def test_nodes_ready_and_admin_updates(client: ControlClient, store: EtcdStore) -> None:
    lease = add_node(store, "n1", "h1")
    add_node(store, "n2", "h2")
    assert [(n.id, n.ready) for n in client.list_nodes()] == [("n1", True), ("n2", True)]
    store.revoke(lease)
    assert not client.inspect_node("h1").ready
    updated = client.update_node("h1", availability="pause", label_add={"zone": "a"})
    assert (updated.availability, updated.labels, updated.ready) == ("pause", {"zone": "a"}, False)
    assert client.update_node("n1", label_rm=["zone"]).labels == {}
    with pytest.raises(NotFound, match=r"^label zone not found on node h1"):
        client.update_node("n1", label_rm=["zone"])


def test_events_see_a_service_create_and_a_node_going_not_ready(
    client: ControlClient, store: EtcdStore
) -> None:
    lease = add_node(store, "n1", "h1")
    stream = client.events()
    seen: queue.Queue[ClusterEvent | Exception] = queue.Queue()

    def follow() -> None:
        try:
            for event in stream:
                seen.put(event)
        except Exception as exc:
            seen.put(exc)

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    try:
        svc = client.create_service(web())
        store.revoke(lease)
        first, second = seen.get(timeout=WAIT), seen.get(timeout=WAIT)
        assert isinstance(first, ClusterEvent) and isinstance(second, ClusterEvent)
        assert (first.type, first.action, first.id, first.name) == ("service", "create", svc.id, "web")
        assert (second.type, second.action, second.id, second.name, second.ready) == (
            "node",
            "update",
            "n1",
            "h1",
            False,
        )
        assert second.revision > first.revision
    finally:
        stream.close()
        reader.join(WAIT)
    assert not reader.is_alive()


def test_invalid_argument_names_the_field(client: ControlClient, store: EtcdStore) -> None:
    with pytest.raises(InvalidArgument, match=r"^invalid placement\.constraints\[0\] 'node\.role==manager'"):
        client.create_service(
            ServiceSpec(name="web", image="busybox", placement={"constraints": ["node.role==manager"]})
        )
    assert store.list(ks.PREFIX + "/")[0] == []
