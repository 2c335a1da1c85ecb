"""The one module that knows etcd paths and how values are encoded.

Layout (see ARCHITECTURE.md):
    /shoal/v1/services/<name>                          Service
    /shoal/v1/tasks/<service>/<slot|node>/<task-id>    Task
    /shoal/v1/nodes/<node>                             NodeInfo
    /shoal/v1/nodes-alive/<node>                       liveness, attached to the node's lease
    /shoal/v1/status/<node>/<task-id>                  TaskStatus, written by that node only
    /shoal/v1/assignments/<node>/<task-id>             Assignment: what the node's agent runs
    /shoal/v1/leader                                   controller election key

A task with a node has an assignment; both are written in one transaction, so an agent watches
one prefix of its own and never reads services.

Values are JSON envelopes `{"v": 1, "kind": ..., "data": ...}` so a later schema can be read
side by side with this one, and a value written by a newer Shoal is refused, not misread.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from agent.errors import IntegrityError, invalid
from controller.api.types import Task

PREFIX = "/shoal/v1"
SCHEMA_VERSION = 1

SERVICES = f"{PREFIX}/services/"
TASKS = f"{PREFIX}/tasks/"
NODES = f"{PREFIX}/nodes/"
ALIVE = f"{PREFIX}/nodes-alive/"
STATUS = f"{PREFIX}/status/"
ASSIGNMENTS = f"{PREFIX}/assignments/"
LEADER = f"{PREFIX}/leader"

M = TypeVar("M", bound=BaseModel)


def _component(field: str, value: str) -> str:
    # A "/" would silently move a record into another part of the keyspace.
    if not value or "/" in value:
        raise invalid(field, value, "must be non-empty and may not contain '/'")
    return value


def service_key(name: str) -> str:
    return SERVICES + _component("service name", name)


def tasks_prefix(service: str) -> str:
    return f"{TASKS}{_component('service name', service)}/"


def task_key(task: Task) -> str:
    where = str(task.slot) if task.slot else _component("node id", task.node_id)
    return f"{tasks_prefix(task.service_name)}{where}/{_component('task id', task.id)}"


def node_key(node_id: str) -> str:
    return NODES + _component("node id", node_id)


def alive_key(node_id: str) -> str:
    return ALIVE + _component("node id", node_id)


def status_prefix(node_id: str) -> str:
    return f"{STATUS}{_component('node id', node_id)}/"


def status_key(node_id: str, task_id: str) -> str:
    return status_prefix(node_id) + _component("task id", task_id)


def assignments_prefix(node_id: str) -> str:
    return f"{ASSIGNMENTS}{_component('node id', node_id)}/"


def assignment_key(node_id: str, task_id: str) -> str:
    return assignments_prefix(node_id) + _component("task id", task_id)


def last_component(key: str) -> str:
    """The node id of a nodes/ or nodes-alive/ key, the task id of a status/ or assignments/ key."""
    return key.rsplit("/", 1)[-1]


def node_of(key: str) -> str:
    """The node id in a status/ or assignments/ key."""
    parts = key.split("/")
    if len(parts) < 2:
        raise invalid("key", key, "expected .../<node>/<task-id>")
    return parts[-2]


@dataclass(frozen=True)
class TaskKey:
    service: str
    slot_or_node: str
    task_id: str


def parse_task_key(key: str) -> TaskKey:
    parts = key.removeprefix(TASKS).split("/")
    if not key.startswith(TASKS) or len(parts) != 3 or not all(parts):
        raise invalid("task key", key, f"expected {TASKS}<service>/<slot|node>/<task-id>")
    return TaskKey(*parts)


def encode(model: BaseModel) -> bytes:
    envelope = {"v": SCHEMA_VERSION, "kind": type(model).__name__, "data": model.model_dump(mode="json")}
    return json.dumps(envelope, separators=(",", ":"), sort_keys=True).encode()


def decode(kind: type[M], key: str, value: bytes) -> M:
    """Decode the value stored at `key` as `kind`; a corrupt or foreign value is an IntegrityError."""
    try:
        envelope = json.loads(value)
        version, found, data = envelope["v"], envelope["kind"], envelope["data"]
    except (ValueError, KeyError, TypeError):
        raise IntegrityError(f"{key}: not a Shoal record") from None
    if version > SCHEMA_VERSION:
        raise IntegrityError(
            f"{key}: written by a newer Shoal (schema {version}; this one reads {SCHEMA_VERSION})"
        )
    if found != kind.__name__:
        raise IntegrityError(f"{key}: holds a {found}, expected a {kind.__name__}")
    try:
        return kind.model_validate(data)
    except ValidationError as e:
        raise IntegrityError(f"{key}: invalid {found}: {e.errors()[0]['msg']}") from None
