"""What the orchestrator tells an observer as it works (the controller's metrics listen).

The orchestrator only reports facts; what they count toward is the observer's business. The
default observer ignores them, so tests and tools need no metrics.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from controller.api import keyspace
from controller.api.types import Task
from controller.store.base import Event

from .decide import Decision
from .state import TaskRecord


class Observer(Protocol):
    def tasks_changed(self, before: Mapping[str, Task | None], after: Mapping[str, Task | None]) -> None:
        """Merged views of the tasks a watch batch touched, before and after it (None: absent)."""
        ...

    def service_passed(self, seconds: float) -> None:
        """One service's reconcile pass (plan, place, commit, re-plans) took this long."""
        ...

    def committed(self, decision: Decision, records: Mapping[str, TaskRecord], now: float) -> None:
        """A pass's decision was written; `records` are the service's stored tasks it was made from."""
        ...

    def decide_failed(self) -> None:
        """The scheduler refused a stored spec: nothing of that service could be placed."""
        ...


class NullObserver:
    def tasks_changed(self, before: Mapping[str, Task | None], after: Mapping[str, Task | None]) -> None:
        pass

    def service_passed(self, seconds: float) -> None:
        pass

    def committed(self, decision: Decision, records: Mapping[str, TaskRecord], now: float) -> None:
        pass

    def decide_failed(self) -> None:
        pass


def touched_tasks(events: Iterable[Event]) -> set[str]:
    """Ids of the tasks whose merged view a batch may change: task records and their statuses."""
    return {
        keyspace.last_component(e.kv.key)
        for e in events
        if e.kv.key.startswith((keyspace.TASKS, keyspace.STATUS))
    }
