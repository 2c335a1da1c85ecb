"""Global services: one task per active, ready node. Paused nodes keep what they run but get
nothing new; drained nodes' tasks stop; a down node's task waits for it, never moves."""

from __future__ import annotations

from controller.api.types import Task

from .context import Context
from .history import prune, retire_slot
from .needs import Fresh, Wait, restart_need
from .plan import PlanBuilder
from .rollout import plan_rollout, start_first
from .slots import Slot, group, settle


def plan_global(ctx: Context, tasks: list[Task], plan: PlanBuilder) -> None:
    slots = group(tasks, lambda t: t.node_id)
    updates: list[tuple[str, Task]] = []
    for node_id in sorted(set(ctx.nodes.nodes) | slots.keys()):
        slot = slots.get(node_id, Slot(()))
        status = ctx.nodes.status(node_id) if node_id else "gone"
        if status == "gone":
            retire_slot(ctx, slot, plan)
            continue
        if status == "drain":
            for task in (*slot.live, *slot.ended):
                plan.stop(task)
            continue
        occupant = settle(slot, ctx.version, plan, start_first(ctx))
        if status != "active":
            continue  # pause, down, lost: keep what is there, add nothing
        if occupant.live is not None:
            if occupant.live.spec_version != ctx.version:
                updates.append((node_id, occupant.live))
        elif occupant.ended is None:
            plan.start(0, node_id)
        elif occupant.ended.spec_version != ctx.version:
            _replace(node_id, occupant.ended, plan)
        else:
            match restart_need(ctx, 0, slot, occupant.ended, node_id):
                case Fresh(old):
                    _replace(node_id, old, plan)
                case Wait(restart):
                    plan.later(restart)
                case _:
                    pass
    kept = {k: v for k, v in slots.items() if ctx.nodes.accepts_new_tasks(k)}
    for r in plan_rollout(ctx, kept, updates, plan):
        _replace(r.key, None if r.start_first else r.old, plan)
    for node_id, slot in slots.items():
        if node_id and node_id in ctx.nodes.nodes:
            prune(ctx, slot, plan)


def _replace(node_id: str, old: Task | None, plan: PlanBuilder) -> None:
    if old is not None:
        plan.stop(old)
    plan.start(0, node_id)
