"""Tasks whose service is gone (or was re-created under a new id): stop them, then delete them."""

from __future__ import annotations

from controller.api.types import Task

from .node_status import NodeView
from .plan import PlanBuilder
from .task_facts import is_terminal


def plan_orphans(tasks: list[Task], nodes: NodeView, plan: PlanBuilder) -> None:
    for task in tasks:
        # Nobody will confirm a stop on a lost or unknown node; the agent drops unknown tasks
        # when it comes back, so the record can go at once.
        unreachable = nodes.status(task.node_id) in ("lost", "gone") if task.node_id else False
        if is_terminal(task) or unreachable or (task.desired_state == "shutdown" and not task.node_id):
            plan.drop(task)
        else:
            plan.stop(task)
