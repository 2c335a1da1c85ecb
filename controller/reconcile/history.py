"""Bounded task history per slot, and retiring slots that are no longer wanted."""

from __future__ import annotations

from controller.api.types import ACTIVE_STATES, Task

from .context import Context
from .plan import PlanBuilder
from .slots import Slot, newest_first
from .task_facts import is_terminal


def prune(ctx: Context, slot: Slot, plan: PlanBuilder) -> None:
    """Keep the newest terminal tasks that are (or are about to be) history; drop the rest.

    Judging what the slot holds *after* this plan keeps the next pass from pruning again.
    Enough history stays to count restart attempts against max_attempts, and while an update runs
    the slot's newest task of another version stays too: it is what marks the slot as part of the
    rollout (a slot added by scaling up holds none), whatever the history limit.
    """
    retain = max(ctx.settings.task_history_limit, ctx.service.spec.restart_policy.max_attempts)
    past = [t for t in slot.tasks if is_terminal(t) and (t.desired_state == "shutdown" or plan.stopping(t))]
    marker = _rollout_marker(ctx, slot)
    for task in newest_first(past)[retain:]:
        if task is not marker:
            plan.drop(task)
    for task in slot.history:
        if ctx.unreachable(task):
            plan.drop(task)


def _rollout_marker(ctx: Context, slot: Slot) -> Task | None:
    status = ctx.service.update_status
    if status is None or status.state not in ACTIVE_STATES:
        return None
    older = [t for t in slot.tasks if t.spec_version != ctx.version]
    return newest_first(older)[0] if older else None


def retire_slot(ctx: Context, slot: Slot, plan: PlanBuilder) -> None:
    """A slot the service no longer has (scaled down, node gone): stop what runs, drop the rest."""
    for task in slot.tasks:
        if is_terminal(task):
            plan.drop(task)
        else:
            ctx.retire(task, plan)


def retire_all(ctx: Context, tasks: list[Task], plan: PlanBuilder) -> None:
    retire_slot(ctx, Slot(tuple(tasks)), plan)
