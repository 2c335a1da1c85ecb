"""Everything one pass knows about one live service, and the record-keeping helpers it shares."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from controller.api.types import Service, Task

from .node_status import NodeStatus, NodeView
from .plan import PlanBuilder
from .settings import ReconcileSettings
from .task_facts import ended_at


@dataclass(frozen=True)
class Context:
    service: Service
    now: float
    settings: ReconcileSettings
    nodes: NodeView
    ended: Mapping[str, float]

    @property
    def version(self) -> int:
        return self.service.task_version

    def node_status(self, task: Task) -> NodeStatus | None:
        """None for a replicated task the scheduler has not placed yet."""
        return self.nodes.status(task.node_id) if task.node_id else None

    def end_of(self, task: Task) -> float:
        return ended_at(task, self.ended)

    def unreachable(self, task: Task) -> bool:
        """No agent will ever confirm a stop: the record can go at once."""
        return self.node_status(task) == "gone"

    def retire(self, task: Task, plan: PlanBuilder) -> None:
        """Take a task out of service; its record stays as history unless nobody can stop it."""
        if self.unreachable(task):
            plan.drop(task)
        else:
            plan.stop(task)
