"""Pure write planning: guards, fences, assignments and etcd's per-transaction limits."""

from __future__ import annotations

from controller.api import keyspace
from controller.api.types import Assignment, Service, ServiceSpec, Task
from controller.orchestrator import Placement, Txn, plan_writes
from controller.orchestrator.commit import MAX_OPS_PER_TXN, MAX_TASKS_PER_TXN
from controller.orchestrator.state import ServiceRecord, TaskRecord
from controller.reconcile import Plan
from controller.store.base import Compare, Delete, Get, Put, absent, unchanged

FENCE = Compare(keyspace.LEADER, "create_revision", "==", 7)
NOW = 1_700_000_000.0
SERVICE = Service(
    id="s1", spec=ServiceSpec(name="web", image="busybox:2"), version=2, created_at="t", updated_at="t"
)
LIVE = ServiceRecord(SERVICE, mod_revision=40)


def new(slot: int, node: str = "") -> Task:
    return Task(
        id=f"t{slot}{node}", service_id="s1", service_name="web", spec_version=2, slot=slot, node_id=node
    )


def stored(t: Task, rev: int = 30) -> TaskRecord:
    return TaskRecord(t, keyspace.task_key(t), rev)


def writes(
    plan: Plan,
    placement: Placement | None = None,
    records: tuple[TaskRecord, ...] | list[TaskRecord] = (),
    assignments: dict[str, bytes] | None = None,
    service: ServiceRecord | None = LIVE,
) -> list[Txn]:
    return plan_writes(
        "web",
        service,
        plan,
        placement or Placement(),
        {r.task.id: r for r in records},
        assignments or {},
        NOW,
        FENCE,
    )


def puts(txns: list[Txn]) -> dict[str, bytes]:
    return {op.key: op.value for t in txns for op in t.success if isinstance(op, Put)}


def test_new_tasks_are_chunked_guarded_and_fenced() -> None:
    tasks = [new(i) for i in range(1, 121)]
    txns = writes(Plan(create=tuple(tasks)), Placement(assigned={t.id: "n1" for t in tasks}))
    assert [len(t.task_ids) for t in txns] == [50, 50, 20]
    for txn in txns:
        assert txn.compares[0] == FENCE
        assert txn.compares[1] == unchanged(keyspace.service_key("web"), 40)
        assert len(txn.success) <= MAX_OPS_PER_TXN and len(txn.compares) <= MAX_OPS_PER_TXN
        assert txn.failure == (Get(keyspace.LEADER),)  # tells "deposed" from "stale" on failure
    first = txns[0]
    placed = first.compares[2]
    assert placed == absent(keyspace.task_key(tasks[0].model_copy(update={"node_id": "n1"})))
    written = puts(txns)
    akey = keyspace.assignment_key("n1", "t1")
    assignment = keyspace.decode(Assignment, akey, written[akey])
    assert assignment.spec == SERVICE.spec and assignment.task.state == "assigned"
    assert assignment.task.node_id == "n1"


def test_deletes_are_chunked_by_ops_as_well_as_tasks() -> None:
    records = [stored(new(i, "n1")) for i in range(1, 61)]
    txns = writes(Plan(remove=tuple(r.task.id for r in records)), records=records)
    per_txn = MAX_OPS_PER_TXN // 3
    assert [len(t.task_ids) for t in txns] == [per_txn, 60 - per_txn]
    assert MAX_TASKS_PER_TXN > per_txn
    ops = txns[0].success[:3]
    t1 = records[0].task
    assert ops == (
        Delete(records[0].key),
        Delete(keyspace.assignment_key("n1", t1.id)),
        Delete(keyspace.status_key("n1", t1.id)),
    )
    assert txns[0].compares[2] == unchanged(records[0].key, 30)


def test_a_removed_service_is_guarded_on_staying_absent() -> None:
    record = stored(new(1, "n1"))
    txns = writes(Plan(remove=(record.task.id,)), records=[record], service=None)
    assert txns[0].compares[1] == absent(keyspace.service_key("web"))


def test_shutdown_rewrites_the_assignment_with_the_spec_it_was_started_with() -> None:
    old_spec = ServiceSpec(name="web", image="busybox:1")
    running = new(1, "n1").model_copy(update={"state": "assigned", "spec_version": 1})
    akey = keyspace.assignment_key("n1", running.id)
    raw = keyspace.encode(Assignment(task=running, spec=old_spec))
    txns = writes(Plan(shutdown=(running.id,)), records=[stored(running)], assignments={akey: raw})
    written = puts(txns)
    assignment = keyspace.decode(Assignment, akey, written[akey])
    assert assignment.spec == old_spec and assignment.task.desired_state == "shutdown"
    task = keyspace.decode(Task, keyspace.task_key(running), written[keyspace.task_key(running)])
    assert (task.desired_state, task.state) == ("shutdown", "assigned")  # the agent reports the rest


def test_shutting_down_a_task_never_placed_ends_it_at_once() -> None:
    waiting = new(3).model_copy(update={"state": "pending", "message": "no suitable node"})
    txns = writes(Plan(shutdown=(waiting.id,)), records=[stored(waiting)])
    [(key, value)] = puts(txns).items()
    task = keyspace.decode(Task, key, value)
    assert (task.desired_state, task.state) == ("shutdown", "shutdown")


def test_a_pending_task_is_rewritten_only_when_placed_or_its_reason_changes() -> None:
    waiting = new(1).model_copy(update={"state": "pending", "message": "no suitable node (x on 3 nodes)"})
    same = Placement(pending={waiting.id: waiting.message})
    assert writes(Plan(), same, [stored(waiting)]) == []
    changed = writes(
        Plan(), Placement(pending={waiting.id: "no suitable node (x on 4 nodes)"}), [stored(waiting)]
    )
    assert len(changed) == 1 and len(changed[0].success) == 1  # the task only: no node, no assignment
    placed = writes(Plan(), Placement(assigned={waiting.id: "n2"}), [stored(waiting, rev=33)])
    assert placed[0].compares[2] == unchanged(keyspace.task_key(waiting), 33)
    written = puts(placed)
    assert set(written) == {keyspace.task_key(waiting), keyspace.assignment_key("n2", waiting.id)}
    task = keyspace.decode(Task, keyspace.task_key(waiting), written[keyspace.task_key(waiting)])
    assert (task.state, task.node_id, task.message) == ("assigned", "n2", "")


def test_unplaceable_new_tasks_are_written_pending_and_skipped_global_ones_not_at_all() -> None:
    a, b = new(0, "n1"), new(0, "n2")
    txns = writes(
        Plan(create=(a, b)), Placement(pending={a.id: "insufficient memory"}, skipped=frozenset({b.id}))
    )
    [(key, value)] = puts(txns).items()
    task = keyspace.decode(Task, key, value)
    assert (task.id, task.state, task.message) == (a.id, "pending", "insufficient memory")


def test_nothing_to_do_writes_nothing() -> None:
    assert writes(Plan()) == []
