"""The reconciler's output: what to write to the store, and when to run again."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from controller.api.types import Service, Task, UpdateStatus

from .task_facts import new_task


@dataclass(frozen=True)
class PendingRestart:
    """A replacement already decided but not due yet (restart delay). Nothing is written for it:
    the pass at or after `not_before` puts it in `Plan.create`. Kept so status can say why."""

    replaces: str
    slot: int
    node_id: str
    not_before: float


@dataclass(frozen=True)
class Plan:
    create: tuple[Task, ...] = ()
    """New tasks: state "new", desired "running", slot (replicated, job) or node_id (global) set."""
    shutdown: tuple[str, ...] = ()
    """Ids of tasks whose desired state becomes "shutdown"."""
    remove: tuple[str, ...] = ()
    """Ids of task records to delete (terminal history beyond the limit, tasks of a gone service)."""
    pending: tuple[PendingRestart, ...] = ()
    requeue_at: float | None = None
    """The earliest time the reconciler must run again even if nothing changes (restart delays,
    node grace periods, caps, update delays and monitor periods)."""
    update_status: UpdateStatus | None = None
    """The service's new UpdateStatus, to write into its record; None: unchanged."""
    rollback: bool = False
    """Also roll the service back to its previous spec (with `update_status` rollback_started)."""

    @property
    def is_noop(self) -> bool:
        """Nothing to write now; `requeue_at` may still ask for a later pass."""
        return not (self.create or self.shutdown or self.remove or self.update_status)


class PlanBuilder:
    """Accumulates one pass's decisions; each task id lands in at most one list."""

    def __init__(self, service: Service | None, now: float, new_id: Callable[[], str]) -> None:
        self._service = service
        self._now = now
        self._new_id = new_id
        self._create: list[Task] = []
        self._shutdown: dict[str, None] = {}
        self._remove: dict[str, None] = {}
        self._pending: list[PendingRestart] = []
        self._wake: float | None = None
        self._status: UpdateStatus | None = None
        self._rollback = False

    def start(self, slot: int, node_id: str = "") -> None:
        assert self._service is not None, "only a live service gets new tasks"
        self._create.append(new_task(self._service, slot, node_id, self._now, self._new_id()))

    def stop(self, task: Task) -> None:
        if task.desired_state != "shutdown" and task.id not in self._remove:
            self._shutdown[task.id] = None

    def drop(self, task: Task) -> None:
        self._shutdown.pop(task.id, None)
        self._remove[task.id] = None

    def stopping(self, task: Task) -> bool:
        return task.id in self._shutdown

    def later(self, restart: PendingRestart) -> None:
        self._pending.append(restart)
        self.wake_at(restart.not_before)

    def wake_at(self, when: float) -> None:
        if self._wake is None or when < self._wake:
            self._wake = when

    def set_status(self, status: UpdateStatus) -> None:
        self._status = status

    def roll_back(self, status: UpdateStatus) -> None:
        self._status = status
        self._rollback = True

    def build(self) -> Plan:
        return Plan(
            create=tuple(self._create),
            shutdown=tuple(self._shutdown),
            remove=tuple(self._remove),
            pending=tuple(self._pending),
            requeue_at=self._wake,
            update_status=self._status,
            rollback=self._rollback,
        )
