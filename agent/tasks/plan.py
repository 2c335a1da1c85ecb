"""The pure core of the task worker: what this node should do, given what it was told to run
(assignments), what its runtime holds (containers) and what it last reported (statuses).

Semantics (ARCHITECTURE, agent side): an assignment with desired running -> its container runs;
desired shutdown -> stop the container and keep it as history; assignment gone -> stop and remove
the container. Statuses are reported only when they change (the timestamp aside), and "rejected"
is final once reported. A running container its health check found unhealthy is stopped as a
failure (kubelet's liveness probes): its in-place restart policy then restarts it or it fails.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agent.health import is_unhealthy_message
from agent.tasks.runtime import TaskContainer
from controller.api.types import Assignment, TaskStatus


@dataclass(frozen=True)
class Actions:
    run: tuple[Assignment, ...] = ()
    stop: tuple[str, ...] = ()
    """Container ids to stop for good (kept as history)."""
    remove: tuple[str, ...] = ()
    """Container ids to stop if live, then delete."""
    report: tuple[TaskStatus, ...] = ()
    stop_unhealthy: tuple[str, ...] = ()
    """Container ids to stop as failed because they are unhealthy (their restart policy applies)."""

    @property
    def touches_runtime(self) -> bool:
        return bool(self.run or self.stop or self.remove or self.stop_unhealthy)

    @property
    def empty(self) -> bool:
        return not (self.touches_runtime or self.report)


def plan_node(
    desired: Mapping[str, Assignment],
    actual: Sequence[TaskContainer],
    reported: Mapping[str, TaskStatus],
    now_iso: str,
    run_errors: Mapping[str, str] | None = None,
) -> Actions:
    """`desired`, `reported` and `run_errors` (why run() failed) are keyed by task id."""
    run_errors = run_errors or {}
    newest, remove = _newest_per_task(actual)
    # Containers of tasks this node no longer has go, whatever their state.
    remove += [c.container_id for tid, c in newest.items() if tid not in desired]
    run: list[Assignment] = []
    stop: list[str] = []
    stop_unhealthy: list[str] = []
    report: list[TaskStatus] = []
    for tid, assignment in sorted(desired.items()):
        prev = reported.get(tid)
        if prev is not None and prev.state == "rejected":
            continue  # final: the controller replaces the task
        c = newest.get(tid)
        wants_down = assignment.task.desired_state == "shutdown"
        status: TaskStatus | None
        if tid in run_errors and (c is None or not c.live):
            status = _status(tid, now_iso, "rejected", message=run_errors[tid], container_id=_cid(c))
        elif c is None:
            status = _without_container(assignment, prev, now_iso)
            if status is None and prev is None and not wants_down:
                run.append(assignment)
        else:
            if wants_down and c.live:
                stop.append(c.container_id)
            elif c.status == "running" and c.health == "unhealthy":
                stop_unhealthy.append(c.container_id)
            status = container_status(c, wants_down, now_iso)
        if status is not None and not same_status(status, prev):
            report.append(status)
    return Actions(tuple(run), tuple(stop), tuple(remove), tuple(report), tuple(stop_unhealthy))


def _newest_per_task(actual: Sequence[TaskContainer]) -> tuple[dict[str, TaskContainer], list[str]]:
    """The newest container of each task, and the ids of the older duplicates (to remove)."""
    newest: dict[str, TaskContainer] = {}
    extra: list[str] = []
    for c in sorted(actual, key=lambda c: (c.created, c.container_id), reverse=True):
        if c.task_id in newest:
            extra.append(c.container_id)
        else:
            newest[c.task_id] = c
    return newest, extra


def _without_container(assignment: Assignment, prev: TaskStatus | None, now: str) -> TaskStatus | None:
    """A task whose container is missing: to be run (None), shut down, or lost."""
    tid = assignment.task.id
    if prev is not None and prev.state != "running":
        return None  # it ended and was reported; the container was removed by hand since
    if assignment.task.desired_state == "shutdown":
        restarts, cid = (prev.restarts, prev.container_id) if prev else (0, "")
        return _status(tid, now, "shutdown", message="shut down", restarts=restarts, container_id=cid)
    if prev is None:
        return None  # not started yet: run it
    return _status(
        tid,
        now,
        "failed",
        message="the task's container no longer exists on the node",
        restarts=prev.restarts,
        container_id=prev.container_id,
    )


def container_status(c: TaskContainer, wants_down: bool, now: str) -> TaskStatus | None:
    """The task state a container shows; None for a container that was created but never started."""
    base = {
        "task_id": c.task_id,
        "timestamp": now,
        "restarts": c.restart_count,
        "container_id": c.container_id,
        "address": c.address,
    }
    if c.live:
        return TaskStatus(state="running", health=c.health, **base)
    if c.status == "created":
        return TaskStatus(state="rejected", message=c.error, **base) if c.error else None
    if c.manually_stopped:
        if wants_down:
            return TaskStatus(state="shutdown", message="shut down", exit_code=c.exit_code, **base)
        message = "the container was stopped outside the cluster"
        return TaskStatus(state="failed", message=message, exit_code=c.exit_code, **base)
    if is_unhealthy_message(c.error):
        return TaskStatus(state="failed", message=c.error, exit_code=c.exit_code, **base)
    if c.exit_code == 0 and not c.oom_killed:
        return TaskStatus(state="complete", exit_code=0, **base)
    if c.oom_killed:
        message = f"killed by the kernel's OOM killer (exit code {c.exit_code})"
    elif c.error:
        message = f"exit code {c.exit_code}: {c.error}"
    else:
        message = f"exit code {c.exit_code}"
    return TaskStatus(state="failed", message=message, exit_code=c.exit_code, **base)


def same_status(a: TaskStatus, b: TaskStatus | None) -> bool:
    """Equal in everything but the timestamp (only changes are reported)."""
    return b is not None and a.model_copy(update={"timestamp": ""}) == b.model_copy(update={"timestamp": ""})


def _status(task_id: str, now: str, state: str, **fields: object) -> TaskStatus:
    return TaskStatus.model_validate({"task_id": task_id, "timestamp": now, "state": state, **fields})


def _cid(c: TaskContainer | None) -> str:
    return c.container_id if c is not None else ""
