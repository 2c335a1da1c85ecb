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


UpdateOrder = Literal["stop-first", "start-first"]
FailureAction = Literal["pause", "continue", "rollback"]


class UpdateConfig(Model):
    """Swarm's rolling-update policy (`--update-*`, Compose's deploy.update_config); the same shape
    is the rollback policy (`--rollback-*`, deploy.rollback_config), whose failure_action may only
    be pause or continue."""

    parallelism: int = 1
    """Slots replaced at once; 0 replaces all of them at once."""
    delay: float = 0.0
    """Seconds between one slot's replacement running (or failing) and that worker's next slot."""
    failure_action: FailureAction = "pause"
    monitor: float = 5.0
    """Seconds after a new task starts during which its failure counts against the update."""
    max_failure_ratio: float = 0.0
    """Failures tolerated, as a fraction of the slots the update replaces (0..1)."""
    order: UpdateOrder = "stop-first"
    """start-first: the new task starts while the old one keeps running; the old one stops once
    the new one runs. Falls back to stop-first for a slot whose new task cannot be placed while
    the old one holds its node (a published host port, max_replicas_per_node, resources)."""


UpdateState = Literal[
    "updating", "paused", "completed", "rollback_started", "rollback_paused", "rollback_completed"
]


class UpdateStatus(Model):
    """Where the service's last rolling update (or rollback) is, as Swarm's UpdateStatus."""

    state: UpdateState
    message: str = ""
    started_at: str = ""
    completed_at: str = ""


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
    update_config: UpdateConfig = UpdateConfig()
    rollback_config: UpdateConfig = UpdateConfig()


class Service(Model):
    """A stored service: its spec plus the version that every change of the spec bumps (the leader's
    update_status bookkeeping does not, so it never makes a user's versioned update conflict)."""

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
    previous_task_version: int = 0
    """The task version of previous_spec's tasks (0: unknown), so a rollback gives the tasks that
    still run the previous spec their version back instead of replacing them."""
    update_status: UpdateStatus | None = None
    """The rolling update's progress, kept by the leader; None before any update."""


# Fields that say how many tasks run, or how they are replaced, not what each one runs.
_NOT_TASK_FIELDS = {
    "replicas": 0,
    "total_completions": 0,
    "max_concurrent": 0,
    "update_config": UpdateConfig(),
    "rollback_config": UpdateConfig(),
}
ACTIVE_STATES: tuple[UpdateState, ...] = ("updating", "rollback_started")
MANUAL_ROLLBACK = "manually requested rollback"


def changes_tasks(old: ServiceSpec, new: ServiceSpec) -> bool:
    """Whether going from `old` to `new` changes what a task runs; scaling (or changing the update
    policy) alone does not."""
    return old.model_copy(update=_NOT_TASK_FIELDS) != new.model_copy(update=_NOT_TASK_FIELDS)


def with_spec(service: Service, spec: ServiceSpec, now: str) -> Service:
    """The service after a user's change to `spec`. A change of what tasks run gets a fresh task
    version (above every one used before: task_version <= version always holds) and starts a new
    update. As in Swarm every change resets the status (so a paused update resumes), except that
    one that leaves the tasks alone (a scale) lets an update under way go on as it was."""
    changes = changes_tasks(service.spec, spec)
    status = service.update_status
    if changes or (status is not None and status.state not in ACTIVE_STATES):
        status = None
    return service.model_copy(
        update={
            "spec": spec,
            "version": service.version + 1,
            "task_version": service.version + 1 if changes else service.task_version,
            "updated_at": now,
            "previous_spec": service.spec,
            "previous_task_version": service.task_version,
            "update_status": status,
        }
    )


def rolled_back(service: Service, now: str, status: UpdateStatus) -> Service:
    """The service with its spec and previous spec swapped (a second rollback undoes the first).
    Tasks still running the previous spec get their version back, so only the others are replaced."""
    previous = service.previous_spec
    assert previous is not None, "nothing to roll back to"
    task_version = service.task_version
    if changes_tasks(service.spec, previous):
        task_version = service.previous_task_version or service.version + 1
    return service.model_copy(
        update={
            "spec": previous,
            "previous_spec": service.spec,
            "version": service.version + 1,
            "task_version": task_version,
            "previous_task_version": service.task_version,
            "updated_at": now,
            "update_status": status,
        }
    )


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
