"""Replicated services: slots 1..replicas each keep exactly one wanted task."""

from __future__ import annotations

from controller.api.types import Task

from .caps import choose_moves
from .context import Context
from .history import prune, retire_slot
from .needs import Fresh, Keep, Move, Update, Wait, assess
from .plan import PlanBuilder
from .rollout import plan_rollout, start_first
from .slots import group, settle


def plan_replicated(ctx: Context, tasks: list[Task], plan: PlanBuilder) -> None:
    slots = group(tasks, lambda t: t.slot)
    wanted = range(1, ctx.service.spec.replicas + 1)
    moves: list[tuple[int, Task]] = []
    updates: list[tuple[int, Task]] = []
    for key, slot in sorted(slots.items()):
        if key not in wanted:
            retire_slot(ctx, slot, plan)  # scale-down: the highest slots go
            continue
        need = assess(ctx, key, slot, settle(slot, ctx.version, plan, start_first(ctx)))
        match need:
            case Fresh(old):
                replace(ctx, key, old, plan)
            case Move(old):
                moves.append((key, old))
            case Update(old):
                updates.append((key, old))
            case Wait(restart):
                plan.later(restart)
            case Keep(wake) if wake is not None:
                plan.wake_at(wake)
    for key in wanted:
        if key not in slots:
            plan.start(key)
    # Caps count work in flight in the slots that stay; retired slots no longer hold any.
    kept = {k: v for k, v in slots.items() if k in wanted}
    for key, old in choose_moves(ctx, kept, moves, plan):
        replace(ctx, key, old, plan)
    for r in plan_rollout(ctx, kept, updates, plan):
        replace(ctx, r.key, None if r.start_first else r.old, plan)
    for key, slot in slots.items():
        if key in wanted:
            prune(ctx, slot, plan)


def replace(ctx: Context, key: int, old: Task | None, plan: PlanBuilder) -> None:
    if old is not None:
        ctx.retire(old, plan)
    plan.start(key)
