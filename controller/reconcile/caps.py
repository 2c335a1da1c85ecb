"""The lost-node cap, computed from the records alone so a re-plan never exceeds it (update
parallelism lives in rollout.py).

Work "in flight" is read back from the tasks (an old task told to stop while its slot's
replacement is not running yet), in the spirit of Kubernetes' expectations.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

from controller.api.types import Task

from .context import Context
from .plan import PlanBuilder
from .slots import Slot
from .task_facts import is_live, is_terminal

K = TypeVar("K", int, str)


def _replacement_pending(slot: Slot) -> bool:
    return any(is_live(t) and t.state != "running" for t in slot.tasks)


def moving_nodes(ctx: Context, slots: Iterable[Slot]) -> set[str]:
    """Lost nodes whose tasks were moved and whose replacements are not running yet."""
    nodes: set[str] = set()
    for slot in slots:
        if not _replacement_pending(slot):
            continue
        for task in slot.history:
            if not is_terminal(task) and ctx.node_status(task) == "lost":
                nodes.add(task.node_id)
    return nodes


def choose_moves(
    ctx: Context, slots: Mapping[K, Slot], moves: list[tuple[K, Task]], plan: PlanBuilder
) -> list[tuple[K, Task]]:
    """The moves allowed this pass: every gone node's, and lost nodes' up to the cap, the
    longest-down first. Holding any back asks for a later pass."""
    lost = sorted(
        {t.node_id for _, t in moves if ctx.node_status(t) == "lost"},
        key=lambda n: (ctx.nodes.lost_at(n), n),
    )
    moving = moving_nodes(ctx, slots.values())
    waiting = [n for n in lost if n not in moving]
    budget = max(0, ctx.settings.max_lost_nodes_per_pass - len(moving))
    allowed = moving | set(waiting[:budget])  # finishing a node already on the move adds none
    if len(waiting) > budget:
        plan.wake_at(ctx.now + ctx.settings.retry_interval)
    return [(k, t) for k, t in moves if ctx.node_status(t) == "gone" or t.node_id in allowed]
