"""One behaviour suite for every TaskRuntime: FakeRuntime and NodeRuntime over a real Node (runc).

Each runtime gets its own recipe for a long-running task, for a short-lived one that exits
with 3 (the fake is scripted by labels, the real one runs busybox `sh -c "sleep 0.3; exit 3"`) and
for one that turns unhealthy; everything else is asserted the same way on both.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent.errors import ShoalError
from agent.health import is_unhealthy_message
from agent.tasks.fake_runtime import EXIT_AFTER, EXIT_CODE, HEALTH, FakeRuntime
from agent.tasks.node_runtime import NodeRuntime
from agent.tasks.runtime import TaskContainer, TaskRuntime
from controller.api.types import Assignment, HealthCheck, RestartPolicy, ServiceSpec, Task
from tests.support.agent import in_process_node, wait_for
from tests.support.registry import Registry

WAIT = 20.0
NO_RESTART = RestartPolicy(condition="none")


class Recorder:
    """What subscribe() delivered, in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: list[str] = []

    def __call__(self, task_id: str) -> None:
        with self._lock:
            self.calls.append(task_id)

    def count(self, task_id: str) -> int:
        with self._lock:
            return self.calls.count(task_id)


@dataclass
class Harness:
    runtime: TaskRuntime
    long_running: Callable[[str], Assignment]
    exits_with_3: Callable[[str, RestartPolicy], Assignment]
    turns_unhealthy: Callable[[RestartPolicy], Assignment]
    """Unhealthy once; the run that replaces it stays "starting" (its probe never finishes)."""
    events: Recorder = field(default_factory=Recorder)

    def __post_init__(self) -> None:
        self.runtime.subscribe(self.events)

    def container(self, task_id: str) -> TaskContainer | None:
        found = [c for c in self.runtime.list() if c.task_id == task_id]
        assert len(found) <= 1
        return found[0] if found else None

    def ended(self, task_id: str) -> TaskContainer:
        def done() -> bool:
            c = self.container(task_id)
            return c is not None and c.status == "exited"

        wait_for(done, timeout=WAIT, what=f"task {task_id}'s container to end")
        c = self.container(task_id)
        assert c is not None
        return c

    def unhealthy(self, task_id: str) -> TaskContainer:
        wait_for(
            lambda: (c := self.container(task_id)) is not None and c.health == "unhealthy",
            timeout=WAIT,
            what=f"task {task_id}'s container to turn unhealthy",
        )
        c = self.container(task_id)
        assert c is not None and c.status == "running"
        return c


def make_assignment(
    image: str,
    command: list[str] | None = None,
    labels: dict[str, str] | None = None,
    policy: RestartPolicy = NO_RESTART,
    healthcheck: HealthCheck | None = None,
) -> Assignment:
    tid = uuid.uuid4().hex[:12]
    task = Task(id=tid, service_id="sid", service_name="contract", spec_version=1, slot=1, node_id="n1")
    spec = ServiceSpec(
        name="contract",
        image=image,
        command=command,
        labels=labels or {},
        restart_policy=policy,
        healthcheck=healthcheck,
    )
    return Assignment(task=task, spec=spec)


def fake_harness() -> Iterator[Harness]:
    runtime = FakeRuntime()
    try:
        yield Harness(
            runtime,
            lambda tid: make_assignment("busybox"),
            lambda tid, policy: make_assignment(
                "busybox", labels={EXIT_AFTER: "0.3", EXIT_CODE: "3"}, policy=policy
            ),
            lambda policy: make_assignment(
                "busybox",
                labels={HEALTH: "unhealthy"},
                policy=policy,
                healthcheck=HealthCheck(test=["CMD", "false"]),
            ),
        )
    finally:
        runtime.close()


def node_harness(tmp_path: Path, registry: Registry) -> Iterator[Harness]:
    with in_process_node(tmp_path, registry.host) as node:
        yield Harness(
            NodeRuntime(node, stop_timeout=5),
            # Honours SIGTERM (a plain sleep as pid 1 would ignore it until SIGKILL).
            lambda tid: make_assignment("busybox", ["sh", "-c", "trap 'exit 0' TERM; sleep 30 & wait"]),
            lambda tid, policy: make_assignment("busybox", ["sh", "-c", "sleep 0.3; exit 3"], policy=policy),
            # sh as pid 1 without a trap ignores SIGTERM: the stop ends with SIGKILL after the grace.
            # The first probe fails; later ones (this run's and the next run's) never finish.
            lambda policy: make_assignment(
                "busybox",
                ["sh", "-c", "sleep 60 & wait"],
                policy=policy,
                healthcheck=HealthCheck(
                    test=["CMD-SHELL", "[ -e /probed ] && exec sleep 600; touch /probed; exit 1"],
                    interval=0.2,
                    timeout=600,
                    retries=1,
                ),
            ),
        )


@pytest.fixture(params=["fake", "node"])
def h(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    if request.param == "fake":
        yield from fake_harness()
    else:
        yield from node_harness(tmp_path, request.getfixturevalue("registry"))


def test_run_lists_a_running_container_for_the_task(h: Harness) -> None:
    a = h.long_running("t")
    started = h.runtime.run(a)
    c = h.container(a.task.id)
    assert c is not None and c.container_id == started.container_id
    assert (c.status, c.restart_count, c.manually_stopped, c.error) == ("running", 0, False, "")
    assert c.created
    wait_for(lambda: h.events.count(a.task.id) >= 1, timeout=WAIT, what="the start callback")


def test_subscribe_sees_the_exit_and_the_exit_code(h: Harness) -> None:
    a = h.exits_with_3("t", NO_RESTART)
    h.runtime.run(a)
    wait_for(lambda: h.events.count(a.task.id) >= 2, timeout=WAIT, what="start and exit callbacks")
    c = h.ended(a.task.id)
    assert (c.exit_code, c.restart_count, c.manually_stopped, c.oom_killed) == (3, 0, False, False)


def test_stop_keeps_the_container_then_remove_deletes_it(h: Harness) -> None:
    a = h.long_running("t")
    cid = h.runtime.run(a).container_id
    h.runtime.stop(cid)
    c = h.ended(a.task.id)
    assert c.manually_stopped and c.container_id == cid
    h.runtime.remove(cid)
    assert h.container(a.task.id) is None
    h.runtime.remove(cid)  # removing what is gone is not an error
    h.runtime.stop(cid)


def test_remove_stops_a_running_container_first(h: Harness) -> None:
    a = h.long_running("t")
    cid = h.runtime.run(a).container_id
    h.runtime.remove(cid)
    assert h.container(a.task.id) is None


def test_on_failure_2_restarts_in_place_twice(h: Harness) -> None:
    a = h.exits_with_3("t", RestartPolicy(condition="on-failure", max_attempts=2))
    h.runtime.run(a)
    c = h.ended(a.task.id)
    assert (c.exit_code, c.restart_count) == (3, 2)
    assert h.events.count(a.task.id) >= 1 + 3  # the first start, then each of the 3 exits


def test_an_image_that_cannot_be_pulled_is_refused_with_a_clear_error(h: Harness) -> None:
    a = make_assignment("invalid/nothing-here:latest", ["true"])
    with pytest.raises(ShoalError) as err:
        h.runtime.run(a)
    message = str(err.value)
    assert "invalid/nothing-here" in message and "\n" not in message
    c = h.container(a.task.id)
    assert c is None or not c.live


def test_stop_unhealthy_ends_it_as_a_failure(h: Harness) -> None:
    a = h.turns_unhealthy(NO_RESTART)
    cid = h.runtime.run(a).container_id
    h.unhealthy(a.task.id)
    h.runtime.stop_unhealthy(cid)
    c = h.ended(a.task.id)
    assert is_unhealthy_message(c.error), c.error
    assert (c.manually_stopped, c.restart_count) == (False, 0)


def test_stop_unhealthy_restarts_in_place_and_health_starts_over(h: Harness) -> None:
    a = h.turns_unhealthy(RestartPolicy(condition="on-failure", max_attempts=1))
    cid = h.runtime.run(a).container_id
    h.unhealthy(a.task.id)
    h.runtime.stop_unhealthy(cid)

    def restarted() -> bool:
        c = h.container(a.task.id)
        return c is not None and (c.status, c.restart_count, c.health) == ("running", 1, "starting")

    # Still "unhealthy" after the restart would have the worker stop the new run at once.
    wait_for(restarted, timeout=WAIT, what="the restarted run with its health starting over")
    h.runtime.stop_unhealthy(cid)  # no longer unhealthy: a no-op
    c = h.container(a.task.id)
    assert c is not None and (c.status, c.restart_count, c.manually_stopped) == ("running", 1, False)
