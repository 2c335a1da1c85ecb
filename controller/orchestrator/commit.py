"""Pure planning of the leader's writes: one service's decisions -> guarded transactions.

Every transaction carries the leader fence, a guard on the service record as it was read
(or on its absence, for a removed service) and, per task, a guard on the task record as read
(absent for a new one). So a write planned from a stale cache fails as a whole and is re-planned,
never applied blindly. A task with a node it may run on has an Assignment, written and deleted
in the same transaction as the task, so an agent watches one prefix of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from agent.errors import ShoalError
from controller.api import keyspace
from controller.api.types import Assignment, ServiceSpec, Task, rolled_back
from controller.reconcile import Plan as ReconcilePlan
from controller.reconcile.task_facts import iso
from controller.store.base import Compare, Delete, Get, Op, Put, absent, unchanged

from .state import ServiceRecord, TaskRecord

log = logging.getLogger(__name__)

MAX_TASKS_PER_TXN = 50
MAX_OPS_PER_TXN = 128
"""etcd's default --max-txn-ops, per branch and for the compares."""


@dataclass(frozen=True)
class Placement:
    """Where the scheduler put one service's waiting tasks this pass."""

    assigned: Mapping[str, str] = field(default_factory=dict)
    """task id -> node id."""
    pending: Mapping[str, str] = field(default_factory=dict)
    """task id -> why no node can take it."""
    skipped: frozenset[str] = frozenset()
    """New global tasks not to create at all (their node fails a placement constraint)."""


@dataclass(frozen=True)
class TaskChange:
    task_id: str
    guard: Compare
    ops: tuple[Op, ...]


@dataclass(frozen=True)
class Txn:
    compares: tuple[Compare, ...]
    success: tuple[Op, ...]
    failure: tuple[Op, ...]
    task_ids: tuple[str, ...]


def service_guard(name: str, record: ServiceRecord | None) -> Compare:
    key = keyspace.service_key(name)
    return absent(key) if record is None else unchanged(key, record.mod_revision)


def _put_task(task: Task, spec: ServiceSpec | None) -> tuple[Op, ...]:
    ops: list[Op] = [Put(keyspace.task_key(task), keyspace.encode(task))]
    if spec is not None:
        assignment = Assignment(task=task, spec=spec)
        ops.append(Put(keyspace.assignment_key(task.node_id, task.id), keyspace.encode(assignment)))
    return tuple(ops)


def create(task: Task, spec: ServiceSpec) -> TaskChange:
    """A new task; it gets an Assignment if it was placed."""
    placed = task.state == "assigned"
    return TaskChange(task.id, absent(keyspace.task_key(task)), _put_task(task, spec if placed else None))


def rewrite(record: TaskRecord, task: Task, spec: ServiceSpec | None) -> TaskChange:
    """Replace a stored task; `spec` given: (re)write its Assignment with it too."""
    return TaskChange(task.id, unchanged(record.key, record.mod_revision), _put_task(task, spec))


def delete(record: TaskRecord) -> TaskChange:
    task = record.task
    ops: list[Op] = [Delete(record.key)]
    if task.node_id:  # deleting a key that is not there is a no-op, so no need to know which exist
        ops += [
            Delete(keyspace.assignment_key(task.node_id, task.id)),
            Delete(keyspace.status_key(task.node_id, task.id)),
        ]
    return TaskChange(task.id, unchanged(record.key, record.mod_revision), tuple(ops))


def chunk(
    fence: Compare, guard: Compare, changes: Sequence[TaskChange], last: Sequence[Op] = ()
) -> list[Txn]:
    """Group changes into transactions within etcd's limits. The failure branch reads LEADER so
    the caller can tell "no longer leader" from "stale read". `last` (the service record's own
    write, which changes what `guard` compares) goes into the last transaction."""
    txns: list[Txn] = []
    batch: list[TaskChange] = []
    ops = 0

    def flush(extra: Sequence[Op] = ()) -> None:
        if batch or extra:
            txns.append(
                Txn(
                    compares=(fence, guard, *(c.guard for c in batch)),
                    success=(*(op for c in batch for op in c.ops), *extra),
                    failure=(Get(keyspace.LEADER),),
                    task_ids=tuple(c.task_id for c in batch),
                )
            )
            batch.clear()

    for change in changes:
        if len(batch) >= MAX_TASKS_PER_TXN or ops + len(change.ops) > MAX_OPS_PER_TXN:
            flush()
            ops = 0
        batch.append(change)
        ops += len(change.ops)
    if last and ops + len(last) > MAX_OPS_PER_TXN:
        flush()
    flush(last)
    return txns


def service_write(name: str, record: ServiceRecord | None, plan: ReconcilePlan, now: float) -> tuple[Op, ...]:
    """The service record with the plan's new update status (and, for a rollback, its previous
    spec back). A status is the leader's bookkeeping: it does not bump the version users update
    against; a rollback changes the spec, so it does."""
    if plan.update_status is None or record is None:
        return ()
    service = record.service
    if plan.rollback and service.previous_spec is not None:
        updated = rolled_back(service, iso(now), plan.update_status)
    else:
        updated = service.model_copy(update={"update_status": plan.update_status})
    return (Put(keyspace.service_key(name), keyspace.encode(updated)),)


def plan_writes(
    name: str,
    service: ServiceRecord | None,
    plan: ReconcilePlan,
    placement: Placement,
    records: Mapping[str, TaskRecord],
    assignments: Mapping[str, bytes],
    now: float,
    fence: Compare,
) -> list[Txn]:
    """The transactions that carry out one service's reconcile plan and placements.

    records: the service's stored tasks by id (controller states, not merged with statuses).
    assignments: raw stored Assignment values by key (only the service's are read).
    """
    stamp = iso(now)
    spec = service.service.spec if service is not None else None
    changes: list[TaskChange] = []
    for task in plan.create:
        if task.id in placement.skipped:
            continue
        assert spec is not None, "only a live service creates tasks"
        changes.append(create(_placed(task, placement, stamp), spec))
    for task_id in sorted({*placement.assigned, *placement.pending}):
        record = records.get(task_id)
        if record is None:
            continue  # a new task, written above
        task = _placed(record.task, placement, stamp)
        if task != record.task.model_copy(update={"updated_at": stamp}):
            changes.append(rewrite(record, task, spec if task.state == "assigned" else None))
    for task_id in plan.shutdown:
        record = records.get(task_id)
        if record is not None:
            changes.append(_shut_down(record, assignments, stamp))
    for task_id in plan.remove:
        record = records.get(task_id)
        if record is not None:
            changes.append(delete(record))
    return chunk(fence, service_guard(name, service), changes, service_write(name, service, plan, now))


def _placed(task: Task, placement: Placement, stamp: str) -> Task:
    if task.id in placement.assigned:
        update = {"state": "assigned", "node_id": placement.assigned[task.id], "message": ""}
    elif task.id in placement.pending:
        update = {"state": "pending", "message": placement.pending[task.id]}
    else:
        return task
    return task.model_copy(update={**update, "updated_at": stamp})


def _shut_down(record: TaskRecord, assignments: Mapping[str, bytes], stamp: str) -> TaskChange:
    """Desired state shutdown. With an Assignment, rewrite it (same spec) so the agent stops the
    container. Without one nothing ever ran the task: it is shut down as of now, which makes it
    history the reconciler can prune (else a never-placed task would wait for an agent forever)."""
    task = record.task.model_copy(update={"desired_state": "shutdown", "updated_at": stamp})
    raw = assignments.get(keyspace.assignment_key(task.node_id, task.id)) if task.node_id else None
    if raw is None:
        return rewrite(record, task.model_copy(update={"state": "shutdown"}), None)
    try:
        spec = keyspace.decode(Assignment, keyspace.assignment_key(task.node_id, task.id), raw).spec
    except ShoalError as err:
        # Unreadable: the agent could not have read it either; stop tracking it as placed.
        log.error("orchestrator: %s", err)
        return TaskChange(
            task.id,
            unchanged(record.key, record.mod_revision),
            (*_put_task(task, None), Delete(keyspace.assignment_key(task.node_id, task.id))),
        )
    return rewrite(record, task, spec)
