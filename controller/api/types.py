"""The control plane's data: services, tasks and nodes (Swarm mode's model).

Frozen pydantic models, serialised as JSON in etcd by `controller.api.keyspace`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ResourceAmounts(Model):
    nano_cpus: int = 0
    """CPUs * 1e9."""
    memory_bytes: int = 0
    pids: int = 0


class Resources(Model):
    limits: ResourceAmounts = ResourceAmounts()
    reservations: ResourceAmounts = ResourceAmounts()
    """What the scheduler sets aside on a node for each task."""


class Placement(Model):
    constraints: list[str] = Field(default_factory=list)
    """`node.id|node.hostname|node.labels.X ==|!= value`."""
    preferences: list[str] = Field(default_factory=list)
    """`spread=node.labels.X`, applied in order."""
    max_replicas_per_node: int = 0
    """0 means no limit."""


class RestartPolicy(Model):
    """Swarm's cluster-level restart policy."""

    condition: Literal["none", "on-failure", "any"] = "any"
    delay: float = 5.0
    max_attempts: int = 0
    """0 means unlimited."""
    window: float = 0.0
    """Seconds over which restarts are counted; 0 means since the service was created."""


class PortSpec(Model):
    target: int
    published: int
    protocol: Literal["tcp", "udp"] = "tcp"
    mode: Literal["host"] = "host"


class Mount(Model):
    """A named volume (created on each node on first use) or a host bind; agent.models.MountSpec's shape."""

    type: Literal["volume", "bind"]
    source: str
    """Volume name or absolute host path."""
    target: str
    """Absolute path in the container."""
    read_only: bool = False


class HealthCheck(Model):
    """Docker's HEALTHCHECK: `test` is ["CMD", argv...], ["CMD-SHELL", "command"] or ["NONE"]."""

    test: list[str]
    interval: float = 30.0
    """Seconds between probes."""
    timeout: float = 30.0
    """Seconds one probe may take before it counts as failed."""
    retries: int = 3
    """Consecutive failures that make the container unhealthy."""
    start_period: float = 0.0
    """Seconds after start during which failures do not count (successes still do)."""


ServiceMode = Literal["replicated", "global", "replicated-job"]


class ServiceSpec(Model):
    name: str
    image: str
    command: list[str] | None = None
    entrypoint: list[str] | None = None
    env: list[str] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    mode: ServiceMode = "replicated"
    replicas: int = 1
    """replicated: how many tasks run."""
    total_completions: int = 1
    """replicated-job: how many tasks must complete successfully."""
    max_concurrent: int = 1
    """replicated-job: how many tasks may run at once (Compose's parallelism)."""
    resources: Resources = Resources()
    placement: Placement = Placement()
    restart_policy: RestartPolicy = RestartPolicy()
    ports: list[PortSpec] = Field(default_factory=list)
    scheduling: Literal["spread", "binpack"] = "spread"
    mounts: list[Mount] = Field(default_factory=list)
    user: str | None = None
    """`user`, `uid`, `user:group` or `uid:gid`; None: the image's."""
    working_dir: str | None = None
    """None: the image's."""
    stop_signal: str | None = None
    """`SIGTERM`, `TERM` or `15`; None: the image's, else SIGTERM."""
    stop_grace_period: float | None = None
    """Seconds between the stop signal and SIGKILL; None: the agent's default."""
    healthcheck: HealthCheck | None = None
    """None: no health probe (tasks are healthy once running)."""


class Service(Model):
    """A stored service: its spec plus the version that every write bumps."""

    id: str
    spec: ServiceSpec
    version: int = 1
    task_version: int = 1
    """Bumped only by updates that change what a task runs (not by scaling): tasks carry it as
    their spec_version, and a task of an older one is replaced."""
    created_at: str
    updated_at: str
    previous_spec: ServiceSpec | None = None
    """The spec before the last change, for `service rollback` (which swaps the two)."""


_SCALE_FIELDS = {"replicas": 0, "total_completions": 0, "max_concurrent": 0}


def changes_tasks(old: ServiceSpec, new: ServiceSpec) -> bool:
    """Whether going from `old` to `new` changes what a task runs; scaling alone does not."""
    return old.model_copy(update=_SCALE_FIELDS) != new.model_copy(update=_SCALE_FIELDS)


Availability = Literal["active", "pause", "drain"]


class NodeInfo(Model):
    id: str
    hostname: str
    address: str
    nano_cpus: int
    memory_bytes: int
    labels: dict[str, str] = Field(default_factory=dict)
    availability: Availability = "active"
    ready: bool = True
    """Derived from the node's liveness lease, not stored with the node."""
    agent_api: str = ""
    """The node agent's API (`unix:///path/agent.sock`), for `shoal logs|exec` on its tasks."""


TaskState = Literal[
    "new", "pending", "assigned", "running", "complete", "failed", "shutdown", "rejected", "orphaned"
]
DesiredState = Literal["running", "shutdown", "complete"]


class Task(Model):
    id: str
    service_id: str
    service_name: str
    spec_version: int
    slot: int = 0
    """replicated and job tasks: the slot (1..N); 0 for global tasks."""
    node_id: str = ""
    """Assigned node; for a global task, the node it is for from the start."""
    desired_state: DesiredState = "running"
    state: TaskState = "new"
    message: str = ""
    """Why a task is pending or failed, e.g. the scheduler's reasons."""
    exit_code: int | None = None
    restarts: int = 0
    """In-place restarts its node's agent made (counted against the restart policy's max_attempts)."""
    container_id: str = ""
    address: str = ""
    """The task container's IP address on its node's network (from the agent's status)."""
    health: Health = ""
    created_at: str = ""
    updated_at: str = ""
    """Last change of the record or, in a merged view, of the observed status."""


ObservedState = Literal["running", "complete", "failed", "shutdown", "rejected"]
Health = Literal["", "starting", "healthy", "unhealthy"]
"""Of a running task with a healthcheck; "" when it has none or is not running."""


class TaskStatus(Model):
    """A task's observed state, written by its node's agent only (under /status/<node>/)."""

    task_id: str
    state: ObservedState
    message: str = ""
    exit_code: int | None = None
    restarts: int = 0
    container_id: str = ""
    address: str = ""
    """The container's IP address on the node's network; empty without one."""
    health: Health = ""
    timestamp: str
    """When this state was observed (ISO 8601, UTC)."""


class Assignment(Model):
    """What an agent needs to run one task: the task and its service's spec at the task's version.
    Written by the leader in the same transaction as the task, once the task has a node."""

    task: Task
    spec: ServiceSpec


def observed(task: Task, status: TaskStatus | None) -> Task:
    """The task as the cluster sees it: the agent's status, when there is one, wins over the
    controller's own states (new, pending, assigned)."""
    if status is None:
        return task
    return task.model_copy(
        update={
            "state": status.state,
            "message": status.message,
            "exit_code": status.exit_code,
            "restarts": status.restarts,
            "container_id": status.container_id,
            "address": status.address,
            "health": status.health,
            "updated_at": status.timestamp,
        }
    )
