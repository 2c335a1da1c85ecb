"""Replicated jobs: slots 1..total_completions each need one successful completion, with at most
max_concurrent tasks running at once. A new spec version re-runs the job."""

from __future__ import annotations

from controller.api.types import Task

from .caps import choose_moves
from .context import Context
from .history import prune, retire_slot
from .needs import Fresh, Keep, Move, Update, Wait, assess
from .plan import PlanBuilder
from .slots import Slot, group, settle
from .task_facts import succeeded


def plan_job(ctx: Context, tasks: list[Task], plan: PlanBuilder) -> None:
    spec = ctx.service.spec
    slots = group(tasks, lambda t: t.slot)
    wanted = range(1, spec.total_completions + 1)
    waiting: list[int] = []  # slots ready for a new task, as capacity allows
    moves: list[tuple[int, Task]] = []
    running = 0
    for key in sorted(set(wanted) | slots.keys()):
        slot = slots.get(key, Slot(()))
        if key not in wanted:
            retire_slot(ctx, slot, plan)
            continue
        if done(ctx, slot):
            continue
        occupant = settle(slot, ctx.version, plan)
        match assess(ctx, key, slot, occupant):
            case Fresh(old) | Update(old):
                if old is not None:
                    ctx.retire(old, plan)
                waiting.append(key)
            case Move(old):
                moves.append((key, old))
                running += 1  # until the move is allowed below
            case Wait(restart):
                plan.later(restart)
            case Keep(wake):
                running += occupant.live is not None  # else the slot gave up
                if wake is not None:
                    plan.wake_at(wake)
    kept = {k: v for k, v in slots.items() if k in wanted}
    for key, old in choose_moves(ctx, kept, moves, plan):
        ctx.retire(old, plan)
        running -= 1
        waiting.append(key)
    for key in sorted(waiting)[: max(0, spec.max_concurrent - running)]:
        plan.start(key)
    for key, slot in slots.items():
        if key in wanted:
            prune(ctx, slot, plan)


def done(ctx: Context, slot: Slot) -> bool:
    return any(succeeded(t) and t.spec_version == ctx.version for t in slot.tasks)
