"""The task worker, status writers and node registration over MemoryStore and FakeRuntime.

Most tests drive the worker synchronously (reset/feed + sync()), so each step is exact; one test
runs its threads and its own watch end to end.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from agent.errors import Unavailable
from agent.tasks.fake_runtime import FakeRuntime
from agent.tasks.hollow import HollowFleet, node_ids
from agent.tasks.registration import NodeRegistration
from agent.tasks.status import BatchedStatusWriter, SingleStatusWriter
from agent.tasks.worker import TaskWorker
from controller.api import keyspace
from controller.api.types import Assignment, NodeInfo, ServiceSpec, Task, TaskStatus
from controller.store.base import Compare, Op, TxnResult
from controller.store.memory import MemoryStore
from tests.support.agent import wait_for

NODE = "n1"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def assignment(tid: str, slot: int = 1, image: str = "busybox", node: str = NODE) -> Assignment:
    task = Task(id=tid, service_id="sid", service_name="web", spec_version=1, slot=slot, node_id=node)
    return Assignment(task=task, spec=ServiceSpec(name="web", image=image))


def assign(store: MemoryStore, a: Assignment) -> None:
    store.put(keyspace.assignment_key(a.task.node_id, a.task.id), keyspace.encode(a))


def shut_down(store: MemoryStore, a: Assignment) -> Assignment:
    down = a.model_copy(update={"task": a.task.model_copy(update={"desired_state": "shutdown"})})
    assign(store, down)
    return down


def status_of(store: MemoryStore, tid: str, node: str = NODE) -> TaskStatus | None:
    kv = store.get(keyspace.status_key(node, tid))
    return keyspace.decode(TaskStatus, kv.key, kv.value) if kv else None


class Rig:
    """A worker fed by hand: each test step is reset() + sync(), with no threads."""

    def __init__(self, store: MemoryStore, runtime: FakeRuntime) -> None:
        self.store, self.runtime = store, runtime
        self.worker = TaskWorker(NODE, store, runtime, SingleStatusWriter(store), own_watch=False)

    def sync(self) -> None:
        self.worker.reset(self.store.list(keyspace.assignments_prefix(NODE))[0])
        assert self.worker.sync()


@pytest.fixture
def store() -> Iterator[MemoryStore]:
    s = MemoryStore(clock=Clock())
    yield s
    s.close()


@pytest.fixture
def runtime() -> Iterator[FakeRuntime]:
    rt = FakeRuntime()
    yield rt
    rt.close()


def test_assignment_runs_and_reports_running_with_the_container_id(
    store: MemoryStore, runtime: FakeRuntime
) -> None:
    rig = Rig(store, runtime)
    assign(store, assignment("t1"))
    rig.sync()
    (c,) = runtime.list()
    s = status_of(store, "t1")
    assert c.status == "running" and s is not None
    assert (s.state, s.container_id, s.restarts) == ("running", c.container_id, 0)


def test_desired_shutdown_stops_and_reports_shutdown(store: MemoryStore, runtime: FakeRuntime) -> None:
    rig = Rig(store, runtime)
    a = assignment("t1")
    assign(store, a)
    rig.sync()
    shut_down(store, a)
    rig.sync()
    (c,) = runtime.list()
    s = status_of(store, "t1")
    assert c.status == "exited" and c.manually_stopped  # kept as history
    assert s is not None and (s.state, s.container_id) == ("shutdown", c.container_id)


def test_removed_assignment_removes_the_container(store: MemoryStore, runtime: FakeRuntime) -> None:
    rig = Rig(store, runtime)
    assign(store, assignment("t1"))
    assign(store, assignment("t2", slot=2))
    rig.sync()
    store.delete(keyspace.assignment_key(NODE, "t1"))
    rig.sync()
    assert [c.task_id for c in runtime.list()] == ["t2"]


def test_restarted_worker_adopts_running_containers_and_reports_only_changes(
    store: MemoryStore, runtime: FakeRuntime
) -> None:
    for i in (1, 2, 3):
        assign(store, assignment(f"t{i}", slot=i))
    Rig(store, runtime).sync()
    before = {c.task_id: c.container_id for c in runtime.list()}
    revision = store.list(keyspace.STATUS)[1]
    # While the agent is away: t2's container is gone for good, t3's assignment is deleted.
    runtime.stop(before["t2"])
    runtime.remove(before["t2"])
    store.delete(keyspace.assignment_key(NODE, "t3"))
    revision = store.list(keyspace.STATUS)[1]

    Rig(store, runtime).sync()  # a new worker: nothing in memory from the old one

    after = {c.task_id: c.container_id for c in runtime.list()}
    assert after == {"t1": before["t1"]}  # t1 adopted as it was; t3's container removed
    kvs, _ = store.list(keyspace.status_prefix(NODE))
    changed = {keyspace.last_component(kv.key) for kv in kvs if kv.mod_revision > revision}
    assert changed == {"t2"}  # t1 unchanged: nothing written for it
    s2 = status_of(store, "t2")
    assert s2 is not None and s2.state == "failed" and s2.container_id == before["t2"]


def test_status_racing_a_deleted_assignment_writes_nothing(store: MemoryStore, runtime: FakeRuntime) -> None:
    worker = TaskWorker(NODE, store, runtime, SingleStatusWriter(store), own_watch=False)
    assign(store, assignment("t1"))
    worker.reset(store.list(keyspace.assignments_prefix(NODE))[0])
    # The leader deletes the task (assignment and status) before the worker heard of it.
    store.delete(keyspace.assignment_key(NODE, "t1"))
    assert worker.sync()
    assert status_of(store, "t1") is None
    assert store.list(keyspace.STATUS)[0] == []


def test_an_image_that_cannot_be_pulled_is_rejected_once(store: MemoryStore, runtime: FakeRuntime) -> None:
    rig = Rig(store, runtime)
    assign(store, assignment("t1", image="invalid/nothing"))
    rig.sync()
    s = status_of(store, "t1")
    assert s is not None and s.state == "rejected" and "invalid/nothing" in s.message
    revision = store.list(keyspace.STATUS)[1]
    rig.sync()
    assert store.list(keyspace.STATUS)[1] == revision and runtime.list() == []


def test_batched_writer_falls_back_to_one_by_one_when_an_assignment_is_gone(store: MemoryStore) -> None:
    for i in (1, 2, 3):
        assign(store, assignment(f"t{i}", slot=i))
    store.delete(keyspace.assignment_key(NODE, "t2"))
    statuses = [TaskStatus(task_id=f"t{i}", state="running", timestamp="now") for i in (1, 2, 3)]
    assert BatchedStatusWriter(store, batch=50).write(NODE, statuses) == {"t1", "t3"}
    assert [keyspace.last_component(kv.key) for kv in store.list(keyspace.STATUS)[0]] == ["t1", "t3"]
    more = [TaskStatus(task_id=f"t{i}", state="complete", timestamp="now") for i in (1, 3)]
    assert BatchedStatusWriter(store, batch=50).write(NODE, more) == {"t1", "t3"}


def test_worker_threads_follow_the_watch_end_to_end(store: MemoryStore, runtime: FakeRuntime) -> None:
    worker = TaskWorker(NODE, store, runtime, BatchedStatusWriter(store), resync_interval=60)
    worker.start()
    try:
        a = assignment("t1")
        assign(store, a)
        wait_for(lambda: (s := status_of(store, "t1")) is not None and s.state == "running", what="running")
        shut_down(store, a)
        wait_for(lambda: (s := status_of(store, "t1")) is not None and s.state == "shutdown", what="shutdown")
        store.delete(keyspace.assignment_key(NODE, "t1"))
        wait_for(lambda: runtime.list() == [], what="container removed")
    finally:
        worker.close()


class FlakyStore(MemoryStore):
    """Fails the next `failures` guarded transactions (the status writes) as an etcd outage would."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        if compares and self.failures:
            self.failures -= 1
            raise Unavailable("etcd 127.0.0.1:1 txn failed: UNAVAILABLE: connection refused")
        return super().txn(compares, success, failure)


def test_worker_retries_status_writes_while_the_store_is_away() -> None:
    store, runtime = FlakyStore(failures=2), FakeRuntime()
    worker = TaskWorker(NODE, store, runtime, SingleStatusWriter(store), resync_interval=60)
    worker.start()
    try:
        assign(store, assignment("t1"))
        wait_for(lambda: (s := status_of(store, "t1")) is not None and s.state == "running", what="running")
        assert store.failures == 0 and len(runtime.list()) == 1  # ran once, reported after the retries
    finally:
        worker.close()
        store.close()


# ---- registration ---------------------------------------------------------------------------


def info(**changes: object) -> NodeInfo:
    base = NodeInfo(id=NODE, hostname="h1", address="127.0.0.1", nano_cpus=2_000_000_000, memory_bytes=2**30)
    return base.model_copy(update=changes)


def stored_node(store: MemoryStore) -> NodeInfo:
    kv = store.get(keyspace.node_key(NODE))
    assert kv is not None
    return keyspace.decode(NodeInfo, kv.key, kv.value)


def test_registration_creates_the_node_with_its_labels_and_an_alive_key(store: MemoryStore) -> None:
    reg = NodeRegistration(store, info(labels={"zone": "a"}), ttl=3)
    reg.register()
    assert stored_node(store).labels == {"zone": "a"}
    alive = store.get(keyspace.alive_key(NODE))
    assert alive is not None and alive.lease == reg.lease_id


def test_re_registration_keeps_the_admins_labels_and_availability(store: MemoryStore) -> None:
    NodeRegistration(store, info(labels={"zone": "a"}), ttl=3).register()
    admin = stored_node(store).model_copy(update={"labels": {"zone": "b"}, "availability": "drain"})
    store.put(keyspace.node_key(NODE), keyspace.encode(admin))

    NodeRegistration(
        store, info(labels={"zone": "c"}, address="10.0.0.9", nano_cpus=4_000_000_000), ttl=3
    ).register()

    node = stored_node(store)
    assert (node.labels, node.availability) == ({"zone": "b"}, "drain")
    assert (node.address, node.nano_cpus) == ("10.0.0.9", 4_000_000_000)


def test_a_lost_lease_is_replaced_and_the_alive_key_put_again(store: MemoryStore) -> None:
    reg = NodeRegistration(store, info(), ttl=3)
    reg.register()
    first = reg.lease_id
    store.advance(2)
    reg.renew()
    store.advance(2)
    assert store.get(keyspace.alive_key(NODE)) is not None  # renewed: still alive after 4 s
    store.advance(4)  # cut off longer than the TTL
    assert store.get(keyspace.alive_key(NODE)) is None
    reg.renew()
    alive = store.get(keyspace.alive_key(NODE))
    assert reg.lease_id != first and alive is not None and alive.lease == reg.lease_id


def test_a_restarted_agent_takes_over_its_persisted_lease(store: MemoryStore, tmp_path: Path) -> None:
    lease_file = tmp_path / "lease.json"
    first = NodeRegistration(store, info(), ttl=3, lease_file=lease_file)
    first.register()
    alive = store.get(keyspace.alive_key(NODE))
    store.advance(1)  # restarted within the TTL
    second = NodeRegistration(store, info(), ttl=3, lease_file=lease_file)
    second.register()
    assert second.lease_id == first.lease_id
    assert store.get(keyspace.alive_key(NODE)) == alive  # not even rewritten: no readiness blip
    store.advance(4)  # the old agent's lease is gone when the next one starts
    third = NodeRegistration(store, info(), ttl=3, lease_file=lease_file)
    third.register()
    assert third.lease_id != first.lease_id and store.get(keyspace.alive_key(NODE)) is not None


# ---- the hollow fleet's shared machinery ------------------------------------------------------


def test_hollow_fleet_demultiplexes_one_watch_and_renews_all_leases_in_one_round(store: MemoryStore) -> None:
    ids = node_ids("h", 12)
    assert ids[0] == "h01" and ids[-1] == "h12"
    fleet = HollowFleet(store, [info(id=i, hostname=i) for i in ids], ttl=3)
    fleet.start()
    try:
        assert {keyspace.last_component(kv.key) for kv in store.list(keyspace.ALIVE)[0]} == set(ids)
        a = assignment("t1", node="h07")
        assign(store, a)
        wait_for(lambda: status_of(store, "t1", node="h07") is not None, what="h07's status")
        assert [c.task_id for c in fleet.runtimes["h07"].list()] == ["t1"]
        assert all(not fleet.runtimes[i].list() for i in ids if i != "h07")

        store.advance(2)
        fleet.keepalive_round()
        store.advance(2)
        assert len(store.list(keyspace.ALIVE)[0]) == 12  # renewed in one round
        store.advance(4)  # the fleet was cut off longer than the TTL
        assert store.list(keyspace.ALIVE)[0] == []
        fleet.keepalive_round()
        assert len(store.list(keyspace.ALIVE)[0]) == 12  # new leases, keys put again
    finally:
        fleet.close()
