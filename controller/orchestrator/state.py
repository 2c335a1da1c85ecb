"""ClusterState: the leader's in-memory copy of everything under /shoal/v1/, fed by list + watch.

`load` replaces it from a list, `apply` folds in a batch of watch events and answers which
services need a reconcile pass. Records keep the mod_revision they were read at, so every write
planned from the cache can be guarded on exactly what was read. Assignments are kept as raw
bytes: decoding 10,000 specs nobody reads would dominate the watch, and the only reader (a
desired-state rewrite) decodes the one it needs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agent.errors import ShoalError
from controller.api import keyspace
from controller.api.types import NodeInfo, Service, Task, TaskStatus, observed
from controller.reconcile.task_facts import is_up, parse_time, stumbled
from controller.store.base import Event, KeyValue

log = logging.getLogger(__name__)

TERMINAL = frozenset({"complete", "failed", "shutdown", "rejected", "orphaned"})
WAITING = frozenset({"new", "pending"})
"""Controller states of a task that has no node to run on yet (or, global, not admitted to it)."""


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    service: Service
    mod_revision: int


@dataclass(frozen=True, slots=True)
class TaskRecord:
    task: Task
    """As stored: controller states only; see ClusterState.view for the merged one."""
    key: str
    mod_revision: int


class ClusterState:
    def __init__(self) -> None:
        self._reset()
        self.down_since: dict[str, float] = {}
        """When each known, not-ready node stopped being ready, by the orchestrator's clock."""
        self.up_at: dict[str, float] = {}
        """When each task was first seen up, by the orchestrator's clock (rolling updates compare
        it with their own `now`, so an agent's clock skew does not matter)."""
        self.stumbled_at: dict[str, float] = {}
        """When each task was first seen failing (ended, restarted in place, unhealthy), likewise."""
        self._seen_at: float | None = None
        """The clock reading of the events being applied; None while loading a list."""
        self._list_time = 0.0

    def _reset(self) -> None:
        self.revision = 0
        """The store revision everything here reflects (the list's, then each event's)."""
        self.services: dict[str, ServiceRecord] = {}
        self.tasks: dict[str, TaskRecord] = {}
        self.by_service: dict[str, set[str]] = {}
        """Service name (from the task key) -> task ids."""
        self.statuses: dict[str, TaskStatus] = {}
        """By task id."""
        self.views: dict[str, Task] = {}
        """Merged `observed()` view of each task, kept current so a pass never rebuilds 10,000."""
        self.nodes: dict[str, NodeInfo] = {}
        """As stored; `node_infos()` sets `ready` from the alive set."""
        self.alive: set[str] = set()
        self.assignments: dict[str, bytes] = {}
        """assignment key -> raw value."""

    # -- feeding -------------------------------------------------------------------------

    def load(self, kvs: Iterable[KeyValue], revision: int, now: float) -> set[str]:
        """Replace everything with a fresh list; returns every service name that may need a pass."""
        self._reset()
        seen = (self.up_at, self.stumbled_at)
        self.up_at, self.stumbled_at = {}, {}
        self._seen_at, self._list_time = None, now
        for kv in kvs:
            self._put(kv)
        self.revision = revision
        # What was seen before a re-list is earlier than what the list shows (its latest status).
        for now_map, before in zip((self.up_at, self.stumbled_at), seen, strict=True):
            now_map.update({i: t for i, t in before.items() if i in self.tasks})
        # Down times survive a re-list; a not-ready node we never timed is down since now (the
        # safe side: its grace period starts over rather than its tasks moving at once).
        self.down_since = {n: self.down_since.get(n, now) for n in self.nodes if n not in self.alive}
        return self.all_services()

    def apply(self, events: Sequence[Event], now: float) -> set[str]:
        """Fold in one batch of events; returns the names of the services that need a pass."""
        dirty: set[str] = set()
        self._seen_at = now
        capacity = False  # something that may let a waiting task in happened
        touched_nodes: set[str] = set()
        for event in events:
            key = event.kv.key
            self.revision = max(self.revision, event.kv.mod_revision)
            if key.startswith(keyspace.SERVICES):
                dirty.add(keyspace.last_component(key))
            elif key.startswith(keyspace.TASKS):
                service = _task_service(key)
                if service is not None:
                    dirty.add(service)
                    capacity |= event.type == "delete"  # a deleted task frees its node
            elif key.startswith(keyspace.STATUS):
                task_id = keyspace.last_component(key)
                before = self.statuses.get(task_id)
                if (record := self.tasks.get(task_id)) is not None:
                    dirty.add(record.task.service_name)
            elif key.startswith((keyspace.NODES, keyspace.ALIVE)):
                capacity = True
                touched_nodes.add(keyspace.last_component(key))
            if event.type == "put":
                self._put(event.kv, now)
            else:
                self._delete(key, now)
            if key.startswith(keyspace.STATUS):
                after = self.statuses.get(task_id)
                freed = before is not None and after is None  # status gone with its task
                capacity |= freed or (_terminal(after) and not _terminal(before))
        if capacity:
            dirty |= self.waiting_services()
        if touched_nodes:
            # A node's own tasks may have to move (down, drained, gone): their services need a look.
            dirty |= {t.service_name for t in self.views.values() if t.node_id in touched_nodes}
        return dirty

    def _put(self, kv: KeyValue, now: float | None = None) -> None:
        key = kv.key
        try:
            if key.startswith(keyspace.SERVICES):
                service = keyspace.decode(Service, key, kv.value)
                self.services[keyspace.last_component(key)] = ServiceRecord(service, kv.mod_revision)
            elif key.startswith(keyspace.TASKS):
                name = keyspace.parse_task_key(key).service
                task = keyspace.decode(Task, key, kv.value)
                self.tasks[task.id] = TaskRecord(task, key, kv.mod_revision)
                self.by_service.setdefault(name, set()).add(task.id)
                self._refresh_view(task.id)
            elif key.startswith(keyspace.STATUS):
                status = keyspace.decode(TaskStatus, key, kv.value)
                self.statuses[status.task_id] = status
                self._refresh_view(status.task_id)
            elif key.startswith(keyspace.NODES):
                node = keyspace.decode(NodeInfo, key, kv.value)
                self.nodes[node.id] = node
                if node.id not in self.alive and now is not None:
                    self.down_since.setdefault(node.id, now)
            elif key.startswith(keyspace.ALIVE):
                node_id = keyspace.last_component(key)
                self.alive.add(node_id)
                self.down_since.pop(node_id, None)
            elif key.startswith(keyspace.ASSIGNMENTS):
                self.assignments[key] = kv.value
        except ShoalError as err:
            # A corrupt or foreign record must not stop the loop; acting on an older copy of it
            # would be wrong too, so it counts as absent.
            log.error("orchestrator: skipping %s: %s", key, err)
            self._delete(key, now)

    def _delete(self, key: str, now: float | None) -> None:
        if key.startswith(keyspace.SERVICES):
            self.services.pop(keyspace.last_component(key), None)
        elif key.startswith(keyspace.TASKS):
            task_id = keyspace.last_component(key)
            record = self.tasks.get(task_id)
            if record is None or record.key != key:
                return
            del self.tasks[task_id]
            self.views.pop(task_id, None)
            self.up_at.pop(task_id, None)
            self.stumbled_at.pop(task_id, None)
            service = _task_service(key)
            ids = self.by_service.get(service) if service is not None else None
            if service is not None and ids is not None:
                ids.discard(task_id)
                if not ids:
                    del self.by_service[service]
        elif key.startswith(keyspace.STATUS):
            task_id = keyspace.last_component(key)
            if self.statuses.pop(task_id, None) is not None:
                self._refresh_view(task_id)
        elif key.startswith(keyspace.NODES):
            node_id = keyspace.last_component(key)
            self.nodes.pop(node_id, None)
            self.down_since.pop(node_id, None)
        elif key.startswith(keyspace.ALIVE):
            node_id = keyspace.last_component(key)
            self.alive.discard(node_id)
            if node_id in self.nodes and now is not None:
                self.down_since[node_id] = now
        elif key.startswith(keyspace.ASSIGNMENTS):
            self.assignments.pop(key, None)

    def _refresh_view(self, task_id: str) -> None:
        record = self.tasks.get(task_id)
        if record is not None:
            status = self.statuses.get(task_id)
            view = self.views[task_id] = observed(record.task, status)
            when = self._seen_at
            if when is None and status is not None:
                # Listed, not watched: it happened by the status's time, and not after the list.
                when = min(parse_time(status.timestamp) or self._list_time, self._list_time)
            if when is not None and status is not None:
                if is_up(view):
                    self.up_at.setdefault(task_id, when)
                if stumbled(view):
                    self.stumbled_at.setdefault(task_id, when)

    # -- reading -------------------------------------------------------------------------

    def node_infos(self) -> list[NodeInfo]:
        """Every node with `ready` derived from its liveness key, never from storage."""
        alive = self.alive
        return [
            n if n.ready == (n.id in alive) else n.model_copy(update={"ready": n.id in alive})
            for n in self.nodes.values()
        ]

    def service_tasks(self, name: str) -> list[TaskRecord]:
        return [self.tasks[i] for i in sorted(self.by_service.get(name, ()))]

    def waiting_services(self) -> set[str]:
        """Services that new capacity may help: those with waiting tasks, and every global one."""
        names = {t.service_name for t in self.views.values() if t.state in WAITING}
        names |= {n for n, r in self.services.items() if r.service.spec.mode == "global"}
        return names

    def all_services(self) -> set[str]:
        return set(self.services) | set(self.by_service)


def _task_service(key: str) -> str | None:
    try:
        return keyspace.parse_task_key(key).service
    except ShoalError:
        return None


def _terminal(status: TaskStatus | None) -> bool:
    return status is not None and status.state in TERMINAL
