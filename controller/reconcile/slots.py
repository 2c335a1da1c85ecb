"""A service's tasks grouped by slot (replicated, job) or node (global), and each slot's occupant."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from controller.api.types import Task, TaskState

from .plan import PlanBuilder
from .task_facts import created, is_live, is_terminal, is_up

K = TypeVar("K", int, str)

_PROGRESS: dict[TaskState, int] = {"running": 3, "assigned": 2, "pending": 1}


@dataclass(frozen=True)
class Slot:
    tasks: tuple[Task, ...]

    @property
    def live(self) -> tuple[Task, ...]:
        return tuple(t for t in self.tasks if is_live(t))

    @property
    def ended(self) -> tuple[Task, ...]:
        """Tasks still wanted whose container is over: waiting on a restart decision."""
        return tuple(t for t in self.tasks if t.desired_state != "shutdown" and is_terminal(t))

    @property
    def history(self) -> tuple[Task, ...]:
        return tuple(t for t in self.tasks if t.desired_state == "shutdown")


@dataclass(frozen=True)
class Occupant:
    """The one task a slot keeps wanting: live if any, else the newest ended one, else none."""

    live: Task | None
    ended: Task | None
    standby: Task | None = None
    """start-first: the out-of-date task that keeps running until `live` (its replacement) is up."""


def group(tasks: Iterable[Task], key: Callable[[Task], K]) -> dict[K, Slot]:
    by_key: dict[K, list[Task]] = {}
    for task in tasks:
        by_key.setdefault(key(task), []).append(task)
    return {k: Slot(tuple(v)) for k, v in by_key.items()}


def newest_first(tasks: Iterable[Task]) -> list[Task]:
    return sorted(tasks, key=lambda t: (created(t), t.id), reverse=True)


def settle(slot: Slot, version: int, plan: PlanBuilder, start_first: bool = False) -> Occupant:
    """Pick the slot's occupant and stop every other wanted task, so a slot never has two, except
    that with `start_first` a running out-of-date task stays until its replacement is up. A
    replacement the scheduler could not place ("pending": e.g. the old task holds the node's host
    port or its last max_replicas_per_node place) makes the slot fall back to stop-first. A
    start-first replacement that failed also stays wanted beside the old task: should the restart
    policy give up on it, the rollout stops the old task and the slot ends as stop-first leaves it."""
    live = sorted(
        slot.live,
        key=lambda t: (t.spec_version == version, _PROGRESS.get(t.state, 0), created(t), t.id),
        reverse=True,
    )
    ended = newest_first(slot.ended)
    keep_live = live[0] if live else None
    keep_ended = None if keep_live is not None or not ended else ended[0]
    if start_first and keep_live is not None and keep_live.spec_version != version and ended:
        keep_ended = ended[0] if ended[0].spec_version == version else None
    standby = None
    if (
        start_first
        and keep_live is not None
        and keep_live.spec_version == version
        and keep_live.state != "pending"
        and not is_up(keep_live)
    ):
        standby = next((t for t in live[1:] if t.spec_version != version and t.state == "running"), None)
    for task in (*live, *ended):
        if task is not keep_live and task is not keep_ended and task is not standby:
            plan.stop(task)
    return Occupant(keep_live, keep_ended, standby)
