"""What the API returns besides the stored models: service summaries and cluster events.

Frozen pydantic models like controller/api/types.py, mirrored field for field in shoal.proto.
"""

from __future__ import annotations

from typing import Literal

from agent.errors import ShoalError
from controller.api.types import Model, Service


class ServiceSummary(Model):
    """One line of `service ls`: the service and how far its tasks are from what it asks for."""

    service: Service
    running: int = 0
    """Tasks observed running whose desired state is running."""
    desired: int = 0
    """replicated: replicas; global: tasks desired running; job: total_completions."""
    completed: int = 0
    """Jobs only: tasks that completed successfully."""


EventType = Literal["service", "node", "task"]
EventAction = Literal["create", "update", "remove"]


class ClusterEvent(Model):
    revision: int
    """The store revision of the change: resume after it with `since_revision = revision + 1`."""
    time: str
    """When the controller saw the change (ISO 8601, UTC); the store keeps no timestamps."""
    type: EventType
    action: EventAction
    id: str
    name: str = ""
    """service: its name; node: its hostname; task: `<service>.<slot|node>` when known."""
    node_id: str = ""
    state: str = ""
    desired_state: str = ""
    message: str = ""
    ready: bool | None = None
    """Node events only, when the node's readiness changed (its liveness key came or went)."""


class EventsCompacted(ShoalError):
    """The revision an event stream asked to resume from is no longer in the store's history."""

    grpc_code = "OUT_OF_RANGE"
