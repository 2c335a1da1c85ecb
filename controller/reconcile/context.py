"""Everything one pass knows about one live service, and the record-keeping helpers it shares."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from controller.api.types import Service, Task

from .node_status import NodeStatus, NodeView
from .plan import PlanBuilder
from .settings import ReconcileSettings
from .task_facts import ended_at, is_up, parse_time, stumbled


@dataclass(frozen=True)
class Context:
    service: Service
    now: float
    settings: ReconcileSettings
    nodes: NodeView
    ended: Mapping[str, float]
    up_at: Mapping[str, float] = field(default_factory=dict)
    """When each task was first seen up (see `is_up`), where the caller watched it happen."""
    stumbled_at: Mapping[str, float] = field(default_factory=dict)
    """When each task was first seen failing (see `stumbled`), likewise."""

    @property
    def version(self) -> int:
        return self.service.task_version

    def node_status(self, task: Task) -> NodeStatus | None:
        """None for a replicated task the scheduler has not placed yet."""
        return self.nodes.status(task.node_id) if task.node_id else None

    def end_of(self, task: Task) -> float:
        return ended_at(task, self.ended)

    def up_time(self, task: Task) -> float | None:
        """When the task first came up; None if it never did. Without the caller's record, a task
        up now (and never restarted) came up at its last status change."""
        if task.id in self.up_at:
            return self.up_at[task.id]
        if is_up(task) and task.restarts == 0:
            return parse_time(task.updated_at) or 0.0
        return None

    def stumble_time(self, task: Task) -> float | None:
        """When the task first showed a failure; None if it has not. Without the caller's record,
        at its last status change (the latest it can have been)."""
        if task.id in self.stumbled_at:
            return self.stumbled_at[task.id]
        if stumbled(task):
            return self.end_of(task)
        return None

    def unreachable(self, task: Task) -> bool:
        """No agent will ever confirm a stop: the record can go at once."""
        return self.node_status(task) == "gone"

    def retire(self, task: Task, plan: PlanBuilder) -> None:
        """Take a task out of service; its record stays as history unless nobody can stop it."""
        if self.unreachable(task):
            plan.drop(task)
        else:
            plan.stop(task)
