"""The seam between the task worker and whatever runs containers (runc via `Node`, or a fake).

Also the pure mappings both runtimes share: container names, labels and the restart policy a
task's service spec asks of the node (in-place restarts, as Swarm's agent does them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from agent.models import RestartPolicy
from controller.api.types import Assignment, Health
from controller.api.types import RestartPolicy as ServiceRestartPolicy

TASK_ID = "com.shoal.task.id"
SERVICE_ID = "com.shoal.service.id"
SERVICE_NAME = "com.shoal.service.name"
NODE_ID = "com.shoal.node.id"

RuntimeStatus = Literal["created", "running", "restarting", "exited"]


@dataclass(frozen=True)
class TaskContainer:
    """One container that runs (or ran) a task, as the runtime sees it now."""

    task_id: str
    container_id: str
    status: RuntimeStatus
    exit_code: int = 0
    restart_count: int = 0
    """In-place restarts so far."""
    oom_killed: bool = False
    manually_stopped: bool = False
    """Stopped on request (the worker's stop), not ended by itself."""
    error: str = ""
    """Why it could not start or why its monitor failed; empty otherwise."""
    created: str = ""
    """Creation time (ISO 8601, UTC): the newest container of a task wins."""
    address: str = ""
    """Its IP address on the node's network; empty without one (or once it has stopped)."""
    health: Health = ""
    """Its health check's verdict on the current run; "" without a check."""

    @property
    def live(self) -> bool:
        return self.status in ("running", "restarting")


class TaskRuntime(Protocol):
    def list(self) -> list[TaskContainer]:
        """Every container carrying a task-id label, whatever its state."""
        ...

    def run(self, assignment: Assignment) -> TaskContainer:
        """Create and start the task's container (pulling its image if needed).
        Raises ShoalError when it cannot: the task is then rejected with that message."""
        ...

    def stop(self, container_id: str) -> None:
        """Stop for good (no in-place restart); the container stays as history."""
        ...

    def stop_unhealthy(self, container_id: str) -> None:
        """Stop a running container that is (still) unhealthy, as a failure: its restart policy
        applies, and its error reads `container unhealthy: <last probe output>`. A no-op otherwise.
        May return before the container has stopped: subscribers learn of its exit (or restart)."""
        ...

    def remove(self, container_id: str) -> None:
        """Stop if still live, then delete. Removing an unknown container is not an error."""
        ...

    def subscribe(self, callback: Callable[[str], None]) -> None:
        """`callback(task_id)` whenever one of a task's containers starts, exits or restarts.
        Called from the runtime's own thread: it must only note the change and return."""
        ...


def container_name(assignment: Assignment) -> str:
    """`<service>.<slot>.<task-id>`, or `<service>.<node-id>.<task-id>` for a global task."""
    t = assignment.task
    return f"{t.service_name}.{t.slot if t.slot else t.node_id}.{t.id}"


def task_labels(assignment: Assignment) -> dict[str, str]:
    """The spec's labels plus the ones that tie a container to its task (ours win)."""
    t = assignment.task
    return {
        **assignment.spec.labels,
        TASK_ID: t.id,
        SERVICE_ID: t.service_id,
        SERVICE_NAME: t.service_name,
        NODE_ID: t.node_id,
    }


def restart_policy(policy: ServiceRestartPolicy) -> RestartPolicy:
    """The node-level restart policy for a service's cluster restart policy.

    condition none -> no; max_attempts N > 0 -> on-failure:N (in-place restarts count toward
    max_attempts, so the node never restarts more than the cluster would); on-failure with no
    limit -> on-failure; any with no limit -> always.
    """
    if policy.condition == "none":
        return RestartPolicy(name="no")
    if policy.max_attempts > 0:
        return RestartPolicy(name="on-failure", max_retries=policy.max_attempts)
    if policy.condition == "on-failure":
        return RestartPolicy(name="on-failure")
    return RestartPolicy(name="always")
