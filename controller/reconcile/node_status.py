"""What a node's health and availability mean for the tasks on it, at one instant."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from controller.api.types import NodeInfo

from .settings import ReconcileSettings

NodeStatus = Literal["active", "pause", "drain", "down", "lost", "gone"]
"""down: not ready, still within the grace period; lost: not ready for longer; gone: unknown node."""


@dataclass(frozen=True)
class NodeView:
    nodes: Mapping[str, NodeInfo]
    down_since: Mapping[str, float]
    now: float
    grace: float

    @classmethod
    def of(
        cls, nodes: Sequence[NodeInfo], down_since: Mapping[str, float], now: float, s: ReconcileSettings
    ) -> NodeView:
        # A not-ready node nobody timed is taken as down since now: waiting is the safe side.
        since = {n.id: down_since.get(n.id, now) for n in nodes if not n.ready}
        return cls({n.id: n for n in nodes}, since, now, s.node_down_grace)

    def status(self, node_id: str) -> NodeStatus:
        node = self.nodes.get(node_id)
        if node is None:
            return "gone"
        if node.availability == "drain":
            return "drain"  # drained tasks move at once, whatever the node's health
        if not node.ready:
            return "lost" if self.now >= self.lost_at(node_id) else "down"
        return node.availability

    def lost_at(self, node_id: str) -> float:
        """When tasks on the node count as lost; unknown nodes already are (first in line)."""
        if node_id not in self.nodes:
            return -math.inf
        return self.down_since.get(node_id, math.inf) + self.grace

    def accepts_new_tasks(self, node_id: str) -> bool:
        return self.status(node_id) == "active"
