"""Knobs of the service reconciler (one docstring per field, kopf-style)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReconcileSettings:
    node_down_grace: float = 30.0
    """Seconds a node may stay not ready before its tasks count as lost and are placed elsewhere."""

    max_lost_nodes_per_pass: int = 1
    """Flapping guard: how many lost nodes may have their tasks on the move at once. A node's move
    stays "in flight" until the replacements it caused are running, so a re-plan never adds more."""

    task_history_limit: int = 5
    """Terminal tasks kept per slot (Swarm's task history retention limit)."""

    retry_interval: float = 5.0
    """When a cap holds work back, run again after this long even if no watch event arrives."""
