"""Driving the control plane's keyspace by hand, for orchestrator and election tests.

What an admin (services), a node's registration (nodes/, nodes-alive/) and agents (status/)
would write, written directly so a test controls every step. The simulated agents follow the
agents' contract: a status is written only on change, guarded on the assignment still existing.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from controller.api import keyspace
from controller.api.types import (
    Assignment,
    NodeInfo,
    ObservedState,
    Service,
    ServiceSpec,
    Task,
    TaskStatus,
    changes_tasks,
    observed,
)
from controller.election import fence_for
from controller.store.base import Compare, Put, Store, absent

GIB = 1 << 30


def take_leadership(store: Store, candidate: str = "test-leader", lease: int | None = None) -> Compare:
    result = store.txn([absent(keyspace.LEADER)], [Put(keyspace.LEADER, candidate.encode(), lease)])
    assert result.succeeded, "LEADER is already held"
    return fence_for(result.revision)


def put_node(
    store: Store,
    node_id: str,
    *,
    cpus: float = 4,
    memory: int = 8 * GIB,
    labels: dict[str, str] | None = None,
    alive: bool = True,
) -> NodeInfo:
    node = NodeInfo(
        id=node_id,
        hostname=node_id,
        address="127.0.0.1",
        nano_cpus=int(cpus * 1e9),
        memory_bytes=memory,
        labels=labels or {},
    )
    store.put(keyspace.node_key(node_id), keyspace.encode(node))
    if alive:
        store.put(keyspace.alive_key(node_id), b"")
    return node


def put_service(store: Store, name: str, **spec: Any) -> Service:
    """Create or update a service the way the API does: a new version on every write, a new task
    version when what the tasks run changed."""
    kv = store.get(keyspace.service_key(name))
    old = keyspace.decode(Service, kv.key, kv.value) if kv else None
    body = ({"image": "busybox"} | old.spec.model_dump() if old else {"image": "busybox"}) | spec
    now = datetime.now(UTC).isoformat()
    new_spec = ServiceSpec.model_validate(body | {"name": name})
    service = Service(
        id=old.id if old else uuid.uuid4().hex[:12],
        spec=new_spec,
        version=old.version + 1 if old else 1,
        task_version=old.task_version + changes_tasks(old.spec, new_spec) if old else 1,
        created_at=old.created_at if old else now,
        updated_at=now,
    )
    store.put(keyspace.service_key(name), keyspace.encode(service))
    return service


def stored_tasks(store: Store, service: str | None = None) -> list[Task]:
    prefix = keyspace.tasks_prefix(service) if service else keyspace.TASKS
    kvs, _ = store.list(prefix)
    return [keyspace.decode(Task, kv.key, kv.value) for kv in kvs]


def observed_tasks(store: Store, service: str | None = None) -> list[Task]:
    """Stored tasks merged with their agents' statuses, as the orchestrator sees them."""
    kvs, _ = store.list(keyspace.STATUS)
    statuses = {keyspace.last_component(kv.key): keyspace.decode(TaskStatus, kv.key, kv.value) for kv in kvs}
    return [observed(t, statuses.get(t.id)) for t in stored_tasks(store, service)]


def per_node(tasks: list[Task], running_only: bool = True) -> dict[str, int]:
    wanted = [t for t in tasks if t.desired_state == "running" or not running_only]
    return dict(Counter(t.node_id for t in wanted if t.node_id))


def count(store: Store, prefix: str) -> int:
    return len(store.list(prefix)[0])


class SimAgents:
    """Every node's agent, reduced to its contract: report running for desired running and
    shutdown for desired shutdown, on change only, guarded on the assignment existing."""

    def __init__(self, store: Store, state_for: Callable[[Task], ObservedState] | None = None) -> None:
        self.store = store
        self.state_for = state_for or (lambda t: "running" if t.desired_state == "running" else "shutdown")
        self.writes = 0

    def report(self) -> None:
        kvs, _ = self.store.list(keyspace.ASSIGNMENTS)
        statuses = {kv.key: kv.value for kv in self.store.list(keyspace.STATUS)[0]}
        for kv in kvs:
            task = keyspace.decode(Assignment, kv.key, kv.value).task
            node = keyspace.node_of(kv.key)
            key = keyspace.status_key(node, task.id)
            state = self.state_for(task)
            old = statuses.get(key)
            if old is not None and keyspace.decode(TaskStatus, key, old).state == state:
                continue
            status = TaskStatus(task_id=task.id, state=state, timestamp=datetime.now(UTC).isoformat())
            guard = Compare(kv.key, "create_revision", ">", 0)
            if self.store.txn([guard], [Put(key, keyspace.encode(status))]).succeeded:
                self.writes += 1

    def settled(self, condition: Callable[[], bool]) -> Callable[[], bool]:
        """A wait_for predicate: report what changed, then test the condition."""

        def check() -> bool:
            self.report()
            return condition()

        return check
