"""What one replicated or job slot needs, judged from its occupant alone (kubelet-style actions).

The mode planners then apply the caps that span slots: lost-node moves, update parallelism,
job concurrency.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.api.types import Task

from .context import Context
from .plan import PendingRestart
from .restart import restart_at
from .slots import Occupant, Slot
from .task_facts import ENDED_ON_ITS_OWN


@dataclass(frozen=True)
class Keep:
    wake: float | None = None
    """A node grace period that ends later: the pass then may find the task lost."""


@dataclass(frozen=True)
class Fresh:
    """Start a task now, after retiring `old` if there is one."""

    old: Task | None


@dataclass(frozen=True)
class Move:
    """Replace a task on a lost or gone node, subject to the lost-node cap."""

    old: Task


@dataclass(frozen=True)
class Update:
    """Replace an out-of-date running task, subject to update parallelism."""

    old: Task


@dataclass(frozen=True)
class Wait:
    restart: PendingRestart


Need = Keep | Fresh | Move | Update | Wait


def assess(ctx: Context, key: int, slot: Slot, occupant: Occupant) -> Need:
    task = occupant.live
    if task is not None:
        status = ctx.node_status(task)
        if status in ("lost", "gone"):
            return Move(task)
        if status == "drain":
            return Fresh(task)
        if task.spec_version != ctx.version:
            return Update(task)
        return Keep(ctx.nodes.lost_at(task.node_id) if status == "down" else None)
    task = occupant.ended
    if task is None:
        return Fresh(None)
    if task.spec_version != ctx.version:
        return Fresh(task)  # a new spec is a fresh start, not a restart: no delay, no attempt count
    return restart_need(ctx, key, slot, task)


def restart_need(ctx: Context, key: int, slot: Slot, task: Task, node_id: str = "") -> Need:
    earlier = [
        ctx.end_of(t)
        for t in slot.tasks
        if t is not task and t.spec_version == task.spec_version and t.state in ENDED_ON_ITS_OWN
    ]
    in_place = sum(t.restarts for t in slot.tasks if t.spec_version == task.spec_version)
    when = restart_at(ctx.service.spec.restart_policy, task, ctx.end_of(task), earlier, in_place)
    if when is None:
        return Keep()
    if when <= ctx.now:
        return Fresh(task)
    return Wait(PendingRestart(task.id, key, node_id, when))
