"""Rolling updates through the real orchestrator threads on the in-memory store: the leader keeps
the UpdateStatus in the service record (guarded, never over a user's write) and rolls back."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from controller.api import keyspace
from controller.api.control import Control
from controller.api.types import (
    ObservedState,
    Service,
    ServiceSpec,
    Task,
    TaskStatus,
    UpdateConfig,
    UpdateStatus,
)
from controller.orchestrator import ClusterState, Orchestrator
from controller.orchestrator.commit import MAX_OPS_PER_TXN, Placement, TaskChange, chunk, plan_writes
from controller.orchestrator.state import ServiceRecord
from controller.reconcile import Plan, ReconcileSettings
from controller.store.base import Compare, Event, KeyValue, Put, absent, unchanged
from controller.store.memory import MemoryStore
from tests.support.agent import wait_for
from tests.support.control import SimAgents, put_node, stored_tasks, take_leadership


class ManualClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


BAD = "busybox:bad"


class World:
    def __init__(self) -> None:
        self.store = MemoryStore(ManualClock())
        self.fence = take_leadership(self.store)
        self.control = Control(self.store, clock=self.store.now)
        self.bad_versions: set[int] = set()
        self.agents = SimAgents(self.store, self.state_for)
        self.orchestrator = Orchestrator(
            self.store, self.fence, ReconcileSettings(), clock=self.store.now, retry_interval=0.1
        )

    def state_for(self, task: Task) -> ObservedState:
        if task.desired_state == "shutdown":
            return "shutdown"
        return "failed" if task.spec_version in self.bad_versions else "running"

    def service(self) -> Service:
        return self.control.inspect_service("web")

    def settle(self, what: str, condition: object) -> None:
        assert callable(condition)
        wait_for(self.agents.settled(condition), timeout=10, what=what)

    def state(self) -> str | None:
        status = self.service().update_status
        return status.state if status else None


@pytest.fixture
def world() -> Iterator[World]:
    w = World()
    for n in ("n1", "n2", "n3"):
        put_node(w.store, n)
    w.orchestrator.start()
    try:
        yield w
    finally:
        w.orchestrator.stop()
        w.store.close()


def start(world: World, **config: object) -> list[Task]:
    spec = ServiceSpec(
        name="web",
        image="busybox",
        replicas=4,
        update_config=UpdateConfig.model_validate({"parallelism": 1, "monitor": 0.0} | config),
        rollback_config=UpdateConfig(parallelism=0, monitor=0.0),
    )
    world.control.create_service(spec)
    world.settle(
        "4 running", lambda: sum(t.desired_state == "running" for t in stored_tasks(world.store)) == 4
    )
    world.settle("reported", lambda: len(world.store.list(keyspace.STATUS)[0]) == 4)
    return [t for t in stored_tasks(world.store) if t.desired_state == "running"]


def update_to_bad_image(world: World) -> int:
    current = world.service()
    world.bad_versions.add(current.version + 1)  # the fresh task version the change gets
    updated = world.control.update_service("web", current.spec.model_copy(update={"image": BAD}))
    assert updated.task_version in world.bad_versions
    return updated.task_version


def test_a_failing_update_rolls_back_and_keeps_the_untouched_tasks(world: World) -> None:
    before = start(world, failure_action="rollback")
    bad = update_to_bad_image(world)
    world.settle("rolled back", lambda: world.state() == "rollback_completed")
    service = world.service()
    assert service.spec.image == "busybox" and service.previous_spec is not None
    assert service.update_status is not None and "rolled back due to failure" in service.update_status.message
    tasks = stored_tasks(world.store)
    assert len({t.slot for t in tasks if t.spec_version == bad}) == 1  # parallelism 1: one slot tried
    running = {t.id for t in tasks if t.desired_state == "running"}
    assert len(running) == 4 and len(running & {t.id for t in before}) == 3


def test_a_failing_update_pauses(world: World) -> None:
    start(world, failure_action="pause")
    bad = update_to_bad_image(world)
    world.settle("paused", lambda: world.state() == "paused")
    tasks = stored_tasks(world.store)
    assert len({t.slot for t in tasks if t.spec_version == bad}) == 1
    # A user's change resumes it: a good image this time.
    current = world.service()
    world.control.update_service("web", current.spec.model_copy(update={"image": "busybox:good"}))
    world.settle("completed", lambda: world.state() == "completed")
    assert all(
        t.spec_version == world.service().task_version
        for t in stored_tasks(world.store)
        if t.desired_state == "running"
    )


@pytest.mark.parametrize("rollback", [False, True])
def test_the_status_write_never_overwrites_a_users_change(rollback: bool) -> None:
    store = MemoryStore(ManualClock())
    try:
        fence = take_leadership(store)
        control = Control(store, clock=store.now)
        control.create_service(ServiceSpec(name="web", image="busybox", replicas=2))
        control.update_service("web", control.inspect_service("web").spec.model_copy(update={"image": "v2"}))
        # The leader plans its status write (and a task) from the record it read ...
        kv = store.get(keyspace.service_key("web"))
        assert kv is not None
        stale = ServiceRecord(keyspace.decode(Service, kv.key, kv.value), kv.mod_revision)
        status = UpdateStatus(state="rollback_started" if rollback else "updating", started_at="t")
        new = Task(id="t-new", service_id=stale.service.id, service_name="web", spec_version=2, slot=1)
        plan = Plan(create=(new,), update_status=status, rollback=rollback)
        txns = plan_writes("web", stale, plan, Placement(), {}, {}, store.now(), fence)
        assert txns and any(op.key == kv.key for t in txns for op in t.success)
        # ... a user's change lands before the leader commits ...
        mine = control.inspect_service("web").spec.model_copy(update={"env": ["A=1"]})
        control.update_service("web", mine)
        # ... so every one of the leader's transactions fails, and the user's spec stays.
        assert not any(store.txn(t.compares, t.success, t.failure).succeeded for t in txns)
        after = control.inspect_service("web")
        assert after.spec == mine and after.update_status is None
        assert not stored_tasks(store)
    finally:
        store.close()


def test_cluster_state_notes_when_tasks_came_up_and_stumbled_by_its_own_clock() -> None:
    state = ClusterState()
    task = Task(id="t1", service_id="s", service_name="web", spec_version=1, slot=1, node_id="n1")
    task_key = keyspace.task_key(task)
    state.load([KeyValue(task_key, keyspace.encode(task), 1, 1, 1, 0)], 1, now=100.0)

    def status(rev: int, state_: ObservedState, restarts: int = 0) -> Event:
        s = TaskStatus(task_id="t1", state=state_, restarts=restarts, timestamp="2000-01-01T00:00:00+00:00")
        return Event(
            "put", KeyValue(keyspace.status_key("n1", "t1"), keyspace.encode(s), rev, rev, 1, 0), None
        )

    state.apply([status(2, "running")], now=110.0)
    state.apply([status(3, "running", restarts=1)], now=120.0)
    state.apply([status(4, "running", restarts=2)], now=130.0)
    assert (state.up_at["t1"], state.stumbled_at["t1"]) == (110.0, 120.0)  # the first time each
    state.apply([Event("delete", KeyValue(task_key, b"", 0, 5, 0, 0), None)], now=140.0)
    assert "t1" not in state.up_at and "t1" not in state.stumbled_at


def test_the_status_write_goes_last_and_within_the_op_limit() -> None:
    fence = Compare(keyspace.LEADER, "create_revision", "==", 1)
    guard = unchanged(keyspace.service_key("web"), 7)
    status_put = Put(keyspace.service_key("web"), b"{}")
    full = [TaskChange(f"t{i}", absent(f"k{i}"), (Put(f"k{i}", b""),) * 4) for i in range(32)]
    [txn] = chunk(fence, guard, full[:10], [status_put])
    assert txn.success[-1] == status_put and txn.compares[:2] == (fence, guard)
    txns = chunk(fence, guard, full, [status_put])  # 128 ops: the status needs a transaction of its own
    assert [len(t.success) for t in txns] == [MAX_OPS_PER_TXN, 1] and txns[-1].success == (status_put,)
    [alone] = chunk(fence, guard, [], [status_put])
    assert alone.success == (status_put,) and alone.task_ids == ()
