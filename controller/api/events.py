"""Store watch events -> cluster events: what `shoal events` shows.

`translate` is pure but for `Lookup`, the two reads a raw event cannot answer by itself: a
node's hostname (for liveness changes) and a task's assignment (a status write names only the
node and the task id). Lookups read the current state, so a replayed old event may lack a name.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from agent.errors import ShoalError
from controller.api import keyspace as ks
from controller.api.types import Assignment, NodeInfo, Service, Task, TaskStatus
from controller.api.views import ClusterEvent, EventAction, EventsCompacted, EventType
from controller.store.base import Compacted, Event, Watch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Lookup:
    node: Callable[[str], NodeInfo | None]
    assignment: Callable[[str, str], Assignment | None]
    """(node id, task id) -> the task's assignment, if it still exists."""


def translate(event: Event, time: str, lookup: Lookup) -> ClusterEvent | None:
    """The cluster event for one store event, or None for keys users do not see (assignments,
    the leader key, a status removal, a liveness key re-put) and records that do not decode."""
    key = event.kv.key
    try:
        if key.startswith(ks.SERVICES):
            return _service(event, time)
        if key.startswith(ks.NODES):
            return _node(event, time)
        if key.startswith(ks.ALIVE):
            return _alive(event, time, lookup)
        if key.startswith(ks.TASKS):
            return _task(event, time)
        if key.startswith(ks.STATUS) and event.type == "put":
            return _status(event, time, lookup)
    except ShoalError as exc:  # a corrupt record must not end everyone's event stream
        log.warning("event at revision %d for %s skipped: %s", event.kv.mod_revision, key, exc)
    return None


def _action(event: Event) -> EventAction:
    if event.type == "delete":
        return "remove"
    # version counts writes since the key was (re)created: 1 is its creation.
    return "create" if event.kv.version == 1 else "update"


def _of(
    event: Event, time: str, type: EventType, id: str, name: str, task: Task | None = None
) -> ClusterEvent:
    return ClusterEvent(
        revision=event.kv.mod_revision,
        time=time,
        type=type,
        action=_action(event),
        id=id,
        name=name,
        node_id=task.node_id if task else "",
        state=task.state if task else "",
        desired_state=task.desired_state if task else "",
        message=task.message if task else "",
    )


def _record(event: Event) -> bytes | None:
    """The value that describes the event: the new one, or for a removal the last one, if known."""
    if event.type == "put":
        return event.kv.value
    return event.prev.value if event.prev is not None else None


def _service(event: Event, time: str) -> ClusterEvent:
    name = ks.last_component(event.kv.key)
    value = _record(event)
    sid = ks.decode(Service, event.kv.key, value).id if value is not None else ""
    return _of(event, time, "service", sid, name)


def _node(event: Event, time: str) -> ClusterEvent:
    node_id = ks.last_component(event.kv.key)
    value = _record(event)
    hostname = ks.decode(NodeInfo, event.kv.key, value).hostname if value is not None else ""
    return _of(event, time, "node", node_id, hostname)


def _alive(event: Event, time: str, lookup: Lookup) -> ClusterEvent | None:
    if event.type == "put" and event.kv.version > 1:
        return None  # rewritten while it existed: readiness did not change
    node_id = ks.last_component(event.kv.key)
    node = lookup.node(node_id)
    return ClusterEvent(
        revision=event.kv.mod_revision,
        time=time,
        type="node",
        action="update",
        id=node_id,
        name=node.hostname if node else "",
        ready=event.type == "put",
    )


def task_name(task: Task) -> str:
    """Swarm's task name: `<service>.<slot>` or, for a global task, `<service>.<node>`."""
    return f"{task.service_name}.{task.slot or task.node_id}"


def _task(event: Event, time: str) -> ClusterEvent:
    value = _record(event)
    if value is None:
        parsed = ks.parse_task_key(event.kv.key)
        name = f"{parsed.service}.{parsed.slot_or_node}"
        return _of(event, time, "task", parsed.task_id, name)
    task = ks.decode(Task, event.kv.key, value)
    return _of(event, time, "task", task.id, task_name(task), task)


def _status(event: Event, time: str, lookup: Lookup) -> ClusterEvent:
    status = ks.decode(TaskStatus, event.kv.key, event.kv.value)
    node_id = ks.node_of(event.kv.key)
    assignment = lookup.assignment(node_id, status.task_id)
    return ClusterEvent(
        revision=event.kv.mod_revision,
        time=time,
        type="task",
        action="update",
        id=status.task_id,
        name=task_name(assignment.task) if assignment else "",
        node_id=node_id,
        state=status.state,
        desired_state=assignment.task.desired_state if assignment else "",
        message=status.message,
    )


class EventStream:
    """Cluster events from a store watch. Iterate it on one thread; `close()` from any thread
    ends the iteration (the gRPC server closes it when the client goes away)."""

    def __init__(self, watch: Watch, since_revision: int, clock: Callable[[], str], lookup: Lookup) -> None:
        self._watch = watch
        self._since = since_revision
        self._clock = clock
        self._lookup = lookup
        self._pending: deque[ClusterEvent] = deque()

    def __iter__(self) -> Iterator[ClusterEvent]:
        return self

    def __next__(self) -> ClusterEvent:
        while not self._pending:
            try:
                batch = next(self._watch)
            except Compacted as exc:
                raise compacted(self._since, exc) from None
            now = self._clock()
            self._pending.extend(e for e in (translate(ev, now, self._lookup) for ev in batch) if e)
        return self._pending.popleft()

    def close(self) -> None:
        self._watch.close()


def compacted(since_revision: int, exc: Compacted) -> EventsCompacted:
    return EventsCompacted(
        f"events since revision {since_revision} are no longer available (history compacted at "
        f"revision {exc.revision}): list the current state again, then follow events from now"
    )
