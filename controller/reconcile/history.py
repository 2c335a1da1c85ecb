"""Bounded task history per slot, and retiring slots that are no longer wanted."""

from __future__ import annotations

from controller.api.types import Task

from .context import Context
from .plan import PlanBuilder
from .slots import Slot, newest_first
from .task_facts import is_terminal


def prune(ctx: Context, slot: Slot, plan: PlanBuilder) -> None:
    """Keep the newest terminal tasks that are (or are about to be) history; drop the rest.

    Judging what the slot holds *after* this plan keeps the next pass from pruning again.
    Enough history stays to count restart attempts against max_attempts.
    """
    retain = max(ctx.settings.task_history_limit, ctx.service.spec.restart_policy.max_attempts)
    past = [t for t in slot.tasks if is_terminal(t) and (t.desired_state == "shutdown" or plan.stopping(t))]
    for task in newest_first(past)[retain:]:
        plan.drop(task)
    for task in slot.history:
        if ctx.unreachable(task):
            plan.drop(task)


def retire_slot(ctx: Context, slot: Slot, plan: PlanBuilder) -> None:
    """A slot the service no longer has (scaled down, node gone): stop what runs, drop the rest."""
    for task in slot.tasks:
        if is_terminal(task):
            plan.drop(task)
        else:
            ctx.retire(task, plan)


def retire_all(ctx: Context, tasks: list[Task], plan: PlanBuilder) -> None:
    retire_slot(ctx, Slot(tuple(tasks)), plan)
