"""Small facts about task records: lifecycle predicates, timestamps, and new-task construction."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from controller.api.types import Service, Task, TaskState

TERMINAL: frozenset[TaskState] = frozenset({"complete", "failed", "shutdown", "rejected", "orphaned"})
ENDED_ON_ITS_OWN: frozenset[TaskState] = frozenset({"complete", "failed", "rejected", "orphaned"})
"""Terminal states not caused by our own shutdown: these are what the restart policy counts."""


def is_terminal(task: Task) -> bool:
    return task.state in TERMINAL


def is_live(task: Task) -> bool:
    """Wanted and not yet over: the slot's current occupant."""
    return task.desired_state != "shutdown" and not is_terminal(task)


def is_up(task: Task) -> bool:
    """Running and, with a healthcheck, past its start (what an update waits for)."""
    return task.state == "running" and task.health not in ("starting", "unhealthy")


def stumbled(task: Task) -> bool:
    """Shows a failure: ended on its own, restarted in place, or unhealthy (what an update's
    monitor counts)."""
    return task.state in ENDED_ON_ITS_OWN or task.restarts > 0 or task.health == "unhealthy"


def succeeded(task: Task) -> bool:
    return task.state == "complete" and (task.exit_code or 0) == 0


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat()


def parse_time(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def created(task: Task) -> float:
    return parse_time(task.created_at) or 0.0


def ended_at(task: Task, known: Mapping[str, float]) -> float:
    """When a terminal task ended. Task has no status timestamp, so the caller's record wins, then
    updated_at; an unknown time counts as long ago (restart now) so decisions stay stable."""
    if task.id in known:
        return known[task.id]
    return parse_time(task.updated_at) or 0.0


def new_task(service: Service, slot: int, node_id: str, now: float, task_id: str) -> Task:
    stamp = iso(now)
    return Task(
        id=task_id,
        service_id=service.id,
        service_name=service.spec.name,
        spec_version=service.task_version,
        slot=slot,
        node_id=node_id,
        desired_state="running",
        state="new",
        created_at=stamp,
        updated_at=stamp,
    )
