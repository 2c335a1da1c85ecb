"""The cluster API's logic over a Store, without gRPC: `server.py` exposes it, tests call it directly.

Every write that depends on a read is a transaction guarded by the revision read, so concurrent
API calls (from any controller) never lose an update: a guarded write either lands on exactly
the state it was computed from or is retried / refused. The API writes only what users own:
service records and the admin's part of node records. Tasks belong to the leader's reconciler.
"""

from __future__ import annotations

import logging
import secrets
import string
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from pydantic import BaseModel

from agent.errors import Conflict, InvalidArgument, NotFound, ShoalError, invalid
from controller.api import keyspace as ks
from controller.api.events import EventStream, Lookup, compacted
from controller.api.types import (
    MANUAL_ROLLBACK,
    Assignment,
    NodeInfo,
    Service,
    ServiceSpec,
    Task,
    TaskStatus,
    UpdateStatus,
    observed,
    rolled_back,
    with_spec,
)
from controller.api.validation import validate_name, validate_node_update, validate_spec
from controller.api.views import ClusterEvent, EventsCompacted, ServiceSummary
from controller.reconcile.task_facts import iso
from controller.store.base import Compacted, Delete, KeyValue, Put, Store, absent, unchanged

__all__ = ["ClusterEvent", "Control", "EventStream", "EventsCompacted", "ServiceSummary", "new_id"]

log = logging.getLogger(__name__)

# Guarded writes retried when another writer got in between (an update without a version, or a
# node update racing its agent's re-registration); past this the caller hears Conflict.
WRITE_ATTEMPTS = 16
_ID_ALPHABET = string.ascii_lowercase + string.digits

M = TypeVar("M", bound=BaseModel)


def new_id() -> str:
    """A Swarm-style object id: 25 random lowercase letters and digits."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(25))


class Control:
    def __init__(
        self,
        store: Store,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = new_id,
    ) -> None:
        self.store = store
        self._clock = clock
        self._new_id = new_id

    def _now(self) -> str:
        return iso(self._clock())

    # ---- services ------------------------------------------------------------------------

    def create_service(self, spec: ServiceSpec) -> Service:
        validate_spec(spec)
        now = self._now()
        service = Service(id=self._new_id(), spec=spec, version=1, created_at=now, updated_at=now)
        key = ks.service_key(spec.name)
        if not self.store.txn([absent(key)], [Put(key, ks.encode(service))]).succeeded:
            raise Conflict(f"service {spec.name} already exists")
        return service

    def update_service(self, name: str, spec: ServiceSpec, version: int | None = None) -> Service:
        """Replace the spec of service `name`. With `version`, only if the service is still at it
        (the read-modify-write of `service update`); without, over whatever is stored."""
        validate_name(name)
        validate_spec(spec)
        if spec.name != name:
            raise invalid("name", spec.name, f"must be the name of the service being updated ({name!r})")
        key = ks.service_key(name)
        for _ in range(WRITE_ATTEMPTS):
            kv, current = self._service_at(key, name)
            if version is not None and version != current.version:
                raise Conflict(f"update out of sequence: service {name} is at version {current.version}")
            if spec.mode != current.spec.mode:
                raise invalid(
                    "mode",
                    spec.mode,
                    f"service {name} is {current.spec.mode}: a service's mode cannot change",
                )
            if spec == current.spec:
                return current
            updated = with_spec(current, spec, self._now())
            if self.store.txn([unchanged(key, kv.mod_revision)], [Put(key, ks.encode(updated))]).succeeded:
                return updated
            # Someone else wrote in between: re-read. With a version, the next pass reports it.
        raise Conflict(f"service {name} is being updated concurrently; try again")

    def rollback_service(self, name: str) -> Service:
        """Swap the service's spec and previous spec (a second rollback undoes the first), as a new
        version; tasks are replaced only if what they run differs, under the spec's rollback_config
        (status rollback_started; the leader completes it). Conflict without a previous spec."""
        service_name = self.inspect_service(name).spec.name  # by name or id
        key = ks.service_key(service_name)
        for _ in range(WRITE_ATTEMPTS):
            kv, current = self._service_at(key, name)
            previous = current.previous_spec
            if previous is None:
                raise Conflict(f"service {service_name} has no previous spec to roll back to")
            # started_at is left to the leader, whose clock stamps the tasks the rollback creates.
            status = UpdateStatus(state="rollback_started", message=MANUAL_ROLLBACK)
            rolled = rolled_back(current, self._now(), status)
            if self.store.txn([unchanged(key, kv.mod_revision)], [Put(key, ks.encode(rolled))]).succeeded:
                return rolled
        raise Conflict(f"service {name} is being updated concurrently; try again")

    def remove_service(self, name: str) -> None:
        """Delete the service record; the leader's reconciler then stops and deletes its tasks."""
        service = self.inspect_service(name)
        if not self.store.delete(ks.service_key(service.spec.name)):
            raise NotFound(f"service {name} not found")

    def inspect_service(self, name: str) -> Service:
        """By name or, failing that, by id."""
        validate_ref("service", name)
        if "/" not in name:
            kv = self.store.get(ks.service_key(name))
            if kv is not None:
                return ks.decode(Service, kv.key, kv.value)
        for service in self._services():
            if service.id == name:
                return service
        raise NotFound(f"service {name} not found")

    def list_services(self) -> list[ServiceSummary]:
        services = self._services()
        by_service: dict[str, list[Task]] = {}
        for task in self._tasks(ks.TASKS):
            by_service.setdefault(task.service_id, []).append(task)
        return [summarize(s, by_service.get(s.id, [])) for s in services]

    def _service_at(self, key: str, name: str) -> tuple[KeyValue, Service]:
        kv = self.store.get(key)
        if kv is None:
            raise NotFound(f"service {name} not found")
        return kv, ks.decode(Service, key, kv.value)

    def _services(self) -> list[Service]:
        kvs, _ = self.store.list(ks.SERVICES)
        return _decode_all(Service, kvs)

    # ---- tasks ---------------------------------------------------------------------------

    def list_tasks(self, service: str | None = None, node: str | None = None) -> list[Task]:
        """Tasks as the cluster sees them (the agents' statuses merged in), optionally of one
        service (name or id) and/or one node (id or hostname)."""
        prefix = ks.TASKS
        service_id = None
        if service is not None:
            found = self.inspect_service(service)
            prefix, service_id = ks.tasks_prefix(found.spec.name), found.id
        node_id = self._task_node(node) if node is not None else None
        tasks = [
            t
            for t in self._tasks(prefix)
            if (service_id is None or t.service_id == service_id)
            and (node_id is None or t.node_id == node_id)
        ]
        if node_id is not None and not tasks and not self._nodes_matching(node_id):
            raise NotFound(f"node {node} not found")
        return sorted(tasks, key=lambda t: (t.service_name, t.slot, t.node_id, t.created_at, t.id))

    def _task_node(self, ref: str) -> str:
        # A node may be gone while its tasks are still listed: an unknown ref is taken as an id.
        try:
            return self._find_node(ref)[1].id
        except NotFound:
            return ref

    def _tasks(self, prefix: str) -> list[Task]:
        kvs, _ = self.store.list(prefix)
        status_kvs, _ = self.store.list(ks.STATUS)
        statuses = {(ks.node_of(kv.key), ks.last_component(kv.key)): kv for kv in status_kvs}
        tasks = []
        for task in _decode_all(Task, kvs):
            status_kv = statuses.get((task.node_id, task.id))
            status = _decode_or_none(TaskStatus, status_kv) if status_kv else None
            tasks.append(observed(task, status))
        return tasks

    # ---- nodes ---------------------------------------------------------------------------

    def list_nodes(self) -> list[NodeInfo]:
        kvs, _ = self.store.list(ks.NODES)
        alive = self._alive()
        nodes = [with_ready(n, alive) for n in _decode_all(NodeInfo, kvs)]
        return sorted(nodes, key=lambda n: (n.hostname, n.id))

    def inspect_node(self, ref: str) -> NodeInfo:
        """By id or, failing that, by hostname (InvalidArgument if several nodes share it)."""
        _, node = self._find_node(ref)
        return with_ready(node, self._alive())

    def update_node(
        self,
        ref: str,
        availability: str | None = None,
        label_add: Mapping[str, str] | None = None,
        label_rm: Sequence[str] | None = None,
    ) -> NodeInfo:
        """Change what the admin owns on a node: availability and labels (never what its agent
        reports). Guarded on the record read, retried if the agent re-registered meanwhile."""
        label_add, label_rm = dict(label_add or {}), list(label_rm or [])
        validate_node_update(availability, label_add, label_rm)
        for _ in range(WRITE_ATTEMPTS):
            kv, node = self._find_node(ref)
            labels = dict(node.labels)
            for key in label_rm:
                if key not in labels:
                    raise NotFound(f"label {key} not found on node {node.hostname} ({node.id})")
                del labels[key]
            labels.update(label_add)
            changed = node.model_copy(
                update={"labels": labels, "availability": availability or node.availability}
            )
            if changed == node:
                return with_ready(node, self._alive())
            if self.store.txn(
                [unchanged(kv.key, kv.mod_revision)], [Put(kv.key, ks.encode(changed))]
            ).succeeded:
                return with_ready(changed, self._alive())
        raise Conflict(f"node {ref} is being updated concurrently; try again")

    def remove_node(self, ref: str, force: bool = False) -> None:
        """Delete a node's record; the orchestrator then sees it gone and replaces its tasks at once.
        A ready node is refused unless `force`, which deletes its liveness key too (its agent, if
        still running, is not told: it reappears only when it registers again, e.g. on restart)."""
        for _ in range(WRITE_ATTEMPTS):
            kv, node = self._find_node(ref)
            alive_key = ks.alive_key(node.id)
            # Guarded on both keys: a node that came alive (or changed) since the read is re-judged.
            alive = self.store.get(alive_key)
            if alive is not None and not force:
                raise Conflict(f"node {ref} is ready: drain it and stop its agent first, or use --force")
            compares = [unchanged(kv.key, kv.mod_revision)]
            compares.append(unchanged(alive_key, alive.mod_revision) if alive else absent(alive_key))
            ops = [Delete(kv.key)] + ([Delete(alive_key)] if alive else [])
            if self.store.txn(compares, ops).succeeded:
                return
        raise Conflict(f"node {ref} is being updated concurrently; try again")

    def _find_node(self, ref: str) -> tuple[KeyValue, NodeInfo]:
        validate_ref("node", ref)
        if "/" not in ref:
            kv = self.store.get(ks.node_key(ref))
            if kv is not None:
                return kv, ks.decode(NodeInfo, kv.key, kv.value)
        matches = self._nodes_matching(ref)
        if not matches:
            raise NotFound(f"node {ref} not found")
        if len(matches) > 1:
            ids = ", ".join(n.id for _, n in matches)
            raise invalid("node", ref, f"hostname is ambiguous (nodes {ids}); use a node id")
        return matches[0]

    def _nodes_matching(self, ref: str) -> list[tuple[KeyValue, NodeInfo]]:
        """Nodes whose id or hostname is `ref`."""
        kvs, _ = self.store.list(ks.NODES)
        found = []
        for kv in kvs:
            node = _decode_or_none(NodeInfo, kv)
            if node is not None and ref in (node.id, node.hostname):
                found.append((kv, node))
        return found

    def _alive(self) -> set[str]:
        kvs, _ = self.store.list(ks.ALIVE)
        return {ks.last_component(kv.key) for kv in kvs}

    # ---- events --------------------------------------------------------------------------

    def events(self, since_revision: int = 0) -> EventStream:
        """Cluster events from store revision `since_revision` on (0: from now on). Raises
        EventsCompacted (OUT_OF_RANGE) once that history is gone: list again, then follow."""
        if since_revision < 0:
            raise invalid("since_revision", since_revision, "must be >= 0 (0: from now on)")
        try:
            watch = self.store.watch_prefix(ks.PREFIX + "/", since_revision)
        except Compacted as exc:
            raise compacted(since_revision, exc) from None
        return EventStream(
            watch, since_revision, self._now, Lookup(self._lookup_node, self._lookup_assignment)
        )

    def _lookup_node(self, node_id: str) -> NodeInfo | None:
        kv = self.store.get(ks.node_key(node_id))
        return _decode_or_none(NodeInfo, kv) if kv else None

    def _lookup_assignment(self, node_id: str, task_id: str) -> Assignment | None:
        kv = self.store.get(ks.assignment_key(node_id, task_id))
        return _decode_or_none(Assignment, kv) if kv else None


# ---- pure helpers ----------------------------------------------------------------------------


def summarize(service: Service, tasks: Sequence[Task]) -> ServiceSummary:
    """`tasks` are the service's observed tasks."""
    running = sum(1 for t in tasks if t.state == "running" and t.desired_state == "running")
    completed = 0
    match service.spec.mode:
        case "replicated":
            desired = service.spec.replicas
        case "global":
            desired = sum(1 for t in tasks if t.desired_state == "running")
        case "replicated-job":
            desired = service.spec.total_completions
            completed = sum(1 for t in tasks if t.state == "complete")
    return ServiceSummary(service=service, running=running, desired=desired, completed=completed)


def with_ready(node: NodeInfo, alive: set[str]) -> NodeInfo:
    """A node's readiness comes from its liveness key, never from the stored record."""
    return node.model_copy(update={"ready": node.id in alive})


def validate_ref(kind: str, ref: str) -> None:
    if not ref:
        raise InvalidArgument(f"invalid {kind} '': a {kind} name or id is required")


def _decode_or_none(kind: type[M], kv: KeyValue) -> M | None:
    try:
        return ks.decode(kind, kv.key, kv.value)
    except ShoalError as exc:
        # One corrupt record must not hide all the others from `ls`; it stays in the log.
        log.warning("skipped %s: %s", kv.key, exc)
        return None


def _decode_all(kind: type[M], kvs: Sequence[KeyValue]) -> list[M]:
    return [m for m in (_decode_or_none(kind, kv) for kv in kvs) if m is not None]
