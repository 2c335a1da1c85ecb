"""An in-memory TaskRuntime: instant, scriptable through the spec's labels (hollow agents, unit tests).

A container runs until stopped, unless the spec's labels say `shoal.fake.exit-after` (seconds) and
`shoal.fake.exit-code`; then it exits by itself and the restart policy applies (restarts are
immediate). Each task's container gets a deterministic fake address (`fake_address`). Images named
`invalid/...` cannot be pulled, so their tasks are rejected. A container whose spec has a health
check is "healthy" at once, unless the label `shoal.fake.health` names another health (each run,
except the run that replaces one stopped for being unhealthy: it stays "starting", as the node's
would until its first probe).
tests/integration/test_task_runtime_contract.py holds it to the behaviour of NodeRuntime.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from agent.errors import Conflict, NotFound, invalid
from agent.health import UNHEALTHY
from agent.models import RestartPolicy
from agent.supervisor import Supervisor, Timer
from agent.tasks.runtime import TaskContainer, container_name, restart_policy
from controller.api.types import Assignment, Health

EXIT_AFTER = "shoal.fake.exit-after"
EXIT_CODE = "shoal.fake.exit-code"
HEALTH = "shoal.fake.health"
INVALID_IMAGE_PREFIX = "invalid/"
STOP_EXIT_CODE = 143  # 128 + SIGTERM, what a process that honours the stop signal reports


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class _Container:
    view: TaskContainer
    name: str
    policy: RestartPolicy
    exit_after: float | None
    exit_code: int
    health: Health = ""
    """What each run reports."""
    timer: Timer | None = None


def _script(assignment: Assignment) -> tuple[float | None, int]:
    labels = assignment.spec.labels
    if EXIT_AFTER not in labels:
        return None, 0
    try:
        after = float(labels[EXIT_AFTER])
    except ValueError:
        raise invalid(f"label {EXIT_AFTER}", labels[EXIT_AFTER], "expected seconds") from None
    try:
        code = int(labels.get(EXIT_CODE, "0"))
    except ValueError:
        raise invalid(f"label {EXIT_CODE}", labels[EXIT_CODE], "expected a whole number") from None
    return max(after, 0.0), code


_HEALTHS: dict[str, Health] = {"starting": "starting", "healthy": "healthy", "unhealthy": "unhealthy"}


def _health(assignment: Assignment) -> Health:
    check = assignment.spec.healthcheck
    if check is None or not check.test or check.test[0] == "NONE":
        return ""
    scripted = assignment.spec.labels.get(HEALTH, "healthy")
    if scripted not in _HEALTHS:
        raise invalid(f"label {HEALTH}", scripted, "expected starting, healthy or unhealthy")
    return _HEALTHS[scripted]


def fake_address(task_id: str) -> str:
    """A deterministic 10.x.y.z address per task (hollow agents have no network)."""
    a, b, c = hashlib.sha256(task_id.encode()).digest()[:3]
    return f"10.{a}.{b}.{c % 254 + 1}"


def _restarts(policy: RestartPolicy, exit_code: int, restart_count: int) -> bool:
    """The node's in-place restart rule (agent.restart.decide without the backoff)."""
    if policy.name == "no":
        return False
    if policy.name == "on-failure":
        return exit_code != 0 and not (policy.max_retries and restart_count >= policy.max_retries)
    return True


class FakeRuntime:
    def __init__(self, timers: Supervisor | None = None) -> None:
        """timers: the thread that fires scripted exits; pass one to share it across many runtimes
        (its owner starts and stops it). Without one, the runtime starts its own on first use."""
        self._own_timers = timers is None
        self._timers = timers
        self._lock = threading.Lock()
        self._containers: dict[str, _Container] = {}
        self._callbacks: list[Callable[[str], None]] = []

    def _timer_thread(self) -> Supervisor:
        if self._timers is None:
            self._timers = Supervisor()
            self._timers.start()
        return self._timers

    def close(self) -> None:
        if self._own_timers and self._timers is not None:
            self._timers.stop()

    # -- TaskRuntime ---------------------------------------------------------------------

    def list(self) -> list[TaskContainer]:
        with self._lock:
            return [c.view for c in self._containers.values()]

    def run(self, assignment: Assignment) -> TaskContainer:
        image = assignment.spec.image
        if image.startswith(INVALID_IMAGE_PREFIX):
            raise NotFound(f"pull {image}: repository not found in the registry")
        exit_after, exit_code = _script(assignment)
        health = _health(assignment)
        name = container_name(assignment)
        cid = secrets.token_hex(32)
        with self._lock:
            if any(c.name == name for c in self._containers.values()):
                raise Conflict(f'container name "{name}" is already in use')
            view = TaskContainer(
                assignment.task.id,
                cid,
                "running",
                created=_now(),
                address=fake_address(assignment.task.id),
                health=health,
            )
            policy = restart_policy(assignment.spec.restart_policy)
            c = _Container(view, name, policy, exit_after, exit_code, health)
            self._containers[cid] = c
            self._arm(c)
        self._notify(view.task_id)
        return view

    def stop(self, container_id: str) -> None:
        with self._lock:
            c = self._containers.get(container_id)
            if c is None:
                return
            self._disarm(c)
            if c.view.live:
                c.view = replace(c.view, status="exited", exit_code=STOP_EXIT_CODE, manually_stopped=True)
            else:
                c.view = replace(c.view, manually_stopped=True)
        self._notify(c.view.task_id)

    def stop_unhealthy(self, container_id: str) -> None:
        """As the node: the stop signal ends it with STOP_EXIT_CODE, a failure for the policy."""
        with self._lock:
            c = self._containers.get(container_id)
            if c is None or c.view.status != "running" or c.view.health != "unhealthy":
                return
            self._disarm(c)
            error = f"{UNHEALTHY}: the fake's scripted health"
            if _restarts(c.policy, STOP_EXIT_CODE, c.view.restart_count):
                # Health starts over; scripting it again would have the worker stop it every pass.
                c.view = replace(c.view, restart_count=c.view.restart_count + 1, health="starting")
                self._arm(c)
            else:
                c.view = replace(c.view, status="exited", exit_code=STOP_EXIT_CODE, error=error)
        self._notify(c.view.task_id)

    def remove(self, container_id: str) -> None:
        with self._lock:
            c = self._containers.pop(container_id, None)
            if c is not None:
                self._disarm(c)

    def subscribe(self, callback: Callable[[str], None]) -> None:
        with self._lock:
            self._callbacks.append(callback)

    # -- scripted exits ------------------------------------------------------------------

    def _arm(self, c: _Container) -> None:
        if c.exit_after is not None:
            cid = c.view.container_id
            c.timer = self._timer_thread().call_later(c.exit_after, lambda: self._exit(cid))

    def _disarm(self, c: _Container) -> None:
        if c.timer is not None:
            c.timer.cancel()
            c.timer = None

    def _exit(self, container_id: str) -> None:
        with self._lock:
            c = self._containers.get(container_id)
            if c is None or c.view.status != "running":
                return
            c.timer = None
            if _restarts(c.policy, c.exit_code, c.view.restart_count):
                c.view = replace(c.view, exit_code=c.exit_code, restart_count=c.view.restart_count + 1)
                self._arm(c)
            else:
                c.view = replace(c.view, status="exited", exit_code=c.exit_code)
        self._notify(c.view.task_id)

    def _notify(self, task_id: str) -> None:
        with self._lock:
            callbacks = list(self._callbacks)
        for callback in callbacks:
            callback(task_id)
