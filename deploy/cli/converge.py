"""Has a service converged? Pure: a decision over the service and its observed tasks.

Replicated: `replicas` tasks of the current task version running and no older task still running.
Global: every task desired running is of the current version and running, and there is at least
one (right after a create the orchestrator may not have made any yet) unless no node is ready.
Job: `total_completions` tasks of the current version completed.
A service whose restart condition is `none` has failed as soon as a current task failed.

A rolling update must also have finished (its UpdateStatus completed, after the monitor period),
as `docker service update` waits. A paused update or rollback is a failure ("update paused:
<why>"); a rollback in progress is followed ("rollback: <why>"); an update that the cluster rolled
back is a failure once the rollback completed (a `service rollback` asked for is not).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from controller.api.types import MANUAL_ROLLBACK, Service, Task

_ENDED_BADLY = ("failed", "rejected")


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    converged: bool
    failure: str = ""
    """Why the service cannot converge without a change; empty while it still may."""
    errors: tuple[str, ...] = ()
    """Current messages of tasks that are pending, failed or rejected (for the progress display)."""

    def line(self) -> str:
        noun = "tasks" if self.total != 1 else "task"
        return f"overall progress: {self.done} out of {self.total} {noun}"


def progress(service: Service, tasks: Sequence[Task], ready_nodes: int = 1) -> Progress:
    current = [t for t in tasks if t.spec_version == service.task_version]
    spec = service.spec
    errors = tuple(
        f"{t.service_name}.{t.slot or t.node_id}: {t.state}: {t.message}"
        for t in current
        if t.desired_state != "shutdown" and t.message and t.state in ("pending", *_ENDED_BADLY)
    )
    stale_running = any(
        t.state == "running" and (t.desired_state == "shutdown" or t.spec_version != service.task_version)
        for t in tasks
    )
    failure = ""
    if spec.restart_policy.condition == "none":
        bad = [t for t in current if t.state in _ENDED_BADLY]
        if bad:
            failure = f"task {bad[0].id} {bad[0].state}: {bad[0].message or 'no message'}"
    rolling, note, stopped = _update_state(service)
    errors = (*note, *errors)
    failure = failure or stopped
    if spec.mode == "replicated-job":
        done = sum(1 for t in current if t.state == "complete")
        total = spec.total_completions
        return Progress(min(done, total), total, done >= total and not rolling, failure, errors)
    running = sum(1 for t in current if t.desired_state == "running" and t.state == "running")
    if spec.mode == "replicated":
        total = spec.replicas
        converged = running == total and not stale_running
    else:
        wanted = [t for t in tasks if t.desired_state == "running"]
        total = len(wanted)
        all_current = all(t.spec_version == service.task_version for t in wanted)
        converged = running == total and all_current and not stale_running and (total > 0 or ready_nodes == 0)
    return Progress(min(running, total), total, converged and not rolling, failure, errors)


def _update_state(service: Service) -> tuple[bool, tuple[str, ...], str]:
    """(not converged whatever the tasks say, lines to show, why it stopped for good)."""
    status = service.update_status
    if status is None:
        return False, (), ""
    match status.state:
        case "updating":
            return True, (), ""
        case "rollback_started":
            return True, (f"rollback: {status.message}",), ""
        case "paused":
            return True, (), f"update paused: {status.message}"
        case "rollback_paused":
            return True, (), f"rollback paused: {status.message}"
        case "rollback_completed" if MANUAL_ROLLBACK not in status.message:
            return True, (), f"service rolled back: {status.message}"
    return False, (), ""
