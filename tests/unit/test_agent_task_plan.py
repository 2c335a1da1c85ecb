"""plan_node: the agent's pure decision table (what to run, stop, remove and report)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from agent.tasks.plan import Actions, plan_node, same_status
from agent.tasks.runtime import RuntimeStatus, TaskContainer, container_name, restart_policy, task_labels
from controller.api.types import Assignment, DesiredState, RestartPolicy, ServiceSpec, Task, TaskStatus

NOW = "2025-01-01T00:00:00Z"
LATER = "2025-01-01T00:05:00Z"


def assignment(tid: str = "t1", desired: DesiredState = "running", slot: int = 1) -> Assignment:
    task = Task(
        id=tid,
        service_id="svc-id",
        service_name="web",
        spec_version=1,
        slot=slot,
        node_id="n1",
        desired_state=desired,
        state="assigned",
    )
    return Assignment(task=task, spec=ServiceSpec(name="web", image="busybox", labels={"tier": "front"}))


def ctr(
    tid: str = "t1",
    cid: str = "c1",
    created: str = NOW,
    status: RuntimeStatus = "running",
    exit_code: int = 0,
    restart_count: int = 0,
    oom_killed: bool = False,
    manually_stopped: bool = False,
    error: str = "",
) -> TaskContainer:
    return TaskContainer(
        tid, cid, status, exit_code, restart_count, oom_killed, manually_stopped, error, created
    )


def status(state: str, tid: str = "t1", cid: str = "c1", **kw: object) -> TaskStatus:
    return TaskStatus.model_validate(
        {"task_id": tid, "state": state, "container_id": cid, "timestamp": NOW, **kw}
    )


def plan(
    desired: list[Assignment],
    actual: list[TaskContainer],
    reported: Sequence[TaskStatus] = (),
    errors: dict[str, str] | None = None,
) -> Actions:
    return plan_node({a.task.id: a for a in desired}, actual, {s.task_id: s for s in reported}, LATER, errors)


def states(actions: Actions) -> list[tuple[str, str]]:
    return [(s.task_id, s.state) for s in actions.report]


def test_nothing_assigned_nothing_running_is_a_no_op() -> None:
    assert plan([], []).empty


def test_desired_running_without_a_container_runs_it_and_reports_nothing_yet() -> None:
    a = assignment()
    actions = plan([a], [])
    assert actions.run == (a,) and not actions.report and not actions.stop and not actions.remove


def test_a_running_container_is_reported_running_once() -> None:
    actions = plan([assignment()], [ctr(restart_count=2)])
    assert actions.run == ()
    (s,) = actions.report
    assert (s.state, s.container_id, s.restarts, s.exit_code, s.timestamp) == (
        "running",
        "c1",
        2,
        None,
        LATER,
    )
    assert plan([assignment()], [ctr(restart_count=2)], [s.model_copy(update={"timestamp": NOW})]).empty


def test_restarting_in_place_still_counts_as_running() -> None:
    assert states(plan([assignment()], [ctr(status="restarting", restart_count=1)])) == [("t1", "running")]


@pytest.mark.parametrize(
    ("container", "state", "exit_code", "message"),
    [
        (ctr(status="exited", exit_code=0), "complete", 0, ""),
        (ctr(status="exited", exit_code=3), "failed", 3, "exit code 3"),
        (
            ctr(status="exited", exit_code=137, oom_killed=True),
            "failed",
            137,
            "killed by the kernel's OOM killer (exit code 137)",
        ),
        (
            ctr(status="exited", exit_code=255, error="monitor died"),
            "failed",
            255,
            "exit code 255: monitor died",
        ),
        (
            ctr(status="exited", exit_code=143, manually_stopped=True),
            "failed",
            143,
            "the container was stopped outside the cluster",
        ),
    ],
)
def test_an_ended_container_maps_to_a_final_state(
    container: TaskContainer, state: str, exit_code: int, message: str
) -> None:
    actions = plan([assignment()], [container], [status("running")])
    (s,) = actions.report
    assert (s.state, s.exit_code, s.message) == (state, exit_code, message)
    assert actions.run == ()  # never re-run: the controller replaces ended tasks


def test_desired_shutdown_stops_the_running_container_then_reports_shutdown() -> None:
    down = assignment(desired="shutdown")
    actions = plan([down], [ctr()], [status("running")])
    assert actions.stop == ("c1",) and actions.remove == () and actions.report == ()
    after = plan([down], [ctr(status="exited", exit_code=143, manually_stopped=True)], [status("running")])
    assert after.stop == () and states(after) == [("t1", "shutdown")]
    assert after.report[0].container_id == "c1"


def test_desired_shutdown_of_a_task_that_never_ran_reports_shutdown_without_running_it() -> None:
    actions = plan([assignment(desired="shutdown")], [])
    assert actions.run == () and states(actions) == [("t1", "shutdown")]


def test_desired_shutdown_keeps_a_final_state_already_reached() -> None:
    ended = ctr(status="exited", exit_code=0)
    assert plan([assignment(desired="shutdown")], [ended], [status("complete", exit_code=0)]).empty


def test_assignment_gone_removes_its_containers_running_or_not() -> None:
    actions = plan([], [ctr("t1", "c1"), ctr("t2", "c2", status="exited")])
    assert sorted(actions.remove) == ["c1", "c2"] and actions.stop == () and actions.report == ()


def test_two_containers_for_one_task_keep_the_newest() -> None:
    old, new = ctr(cid="old", created=NOW), ctr(cid="new", created=LATER)
    actions = plan([assignment()], [new, old])
    assert actions.remove == ("old",)
    assert [s.container_id for s in actions.report] == ["new"]


def test_a_run_error_is_reported_as_rejected_and_stays_rejected() -> None:
    actions = plan([assignment()], [], errors={"t1": "pull invalid/x: not found"})
    (s,) = actions.report
    assert (s.state, s.message) == ("rejected", "pull invalid/x: not found")
    # The failed start left a dead container behind: still rejected, never re-run, never "failed".
    dead = ctr(status="exited", exit_code=127, error="exec failed")
    assert plan([assignment()], [dead], [s]).empty
    assert plan([assignment()], [], [s]).empty


def test_a_container_that_vanished_while_reported_running_is_failed() -> None:
    actions = plan([assignment()], [], [status("running", restarts=1)])
    assert actions.run == ()
    (s,) = actions.report
    assert (s.state, s.container_id, s.restarts) == ("failed", "c1", 1)


def test_reported_final_state_without_container_is_left_alone() -> None:
    assert plan([assignment()], [], [status("complete", exit_code=0)]).empty


def test_reports_compare_every_field_but_the_timestamp() -> None:
    a = status("running", restarts=1)
    assert same_status(a.model_copy(update={"timestamp": LATER}), a)
    assert not same_status(a.model_copy(update={"restarts": 2}), a)
    assert not same_status(a, None)


def test_several_tasks_are_planned_independently() -> None:
    desired = [assignment("t1"), assignment("t2", slot=2), assignment("t3", desired="shutdown", slot=3)]
    actual = [ctr("t2", "c2"), ctr("t3", "c3"), ctr("t9", "c9")]
    actions = plan(desired, actual, [status("running", "t3", "c3")])
    assert [a.task.id for a in actions.run] == ["t1"]
    assert actions.stop == ("c3",) and actions.remove == ("c9",)
    assert states(actions) == [("t2", "running")]


@pytest.mark.parametrize(
    ("policy", "name", "retries"),
    [
        (RestartPolicy(condition="none"), "no", 0),
        (RestartPolicy(condition="none", max_attempts=3), "no", 0),
        (RestartPolicy(condition="any", max_attempts=3), "on-failure", 3),
        (RestartPolicy(condition="on-failure", max_attempts=2), "on-failure", 2),
        (RestartPolicy(condition="on-failure"), "on-failure", 0),
        (RestartPolicy(condition="any"), "always", 0),
    ],
)
def test_restart_policy_mapping(policy: RestartPolicy, name: str, retries: int) -> None:
    mapped = restart_policy(policy)
    assert (mapped.name, mapped.max_retries) == (name, retries)


def test_container_names_and_labels() -> None:
    a = assignment("abc", slot=2)
    assert container_name(a) == "web.2.abc"
    glob = a.model_copy(update={"task": a.task.model_copy(update={"slot": 0})})
    assert container_name(glob) == "web.n1.abc"
    assert task_labels(a) == {
        "tier": "front",
        "com.shoal.task.id": "abc",
        "com.shoal.service.id": "svc-id",
        "com.shoal.service.name": "web",
        "com.shoal.node.id": "n1",
    }


def test_the_containers_address_is_reported_and_a_new_address_is_a_change() -> None:
    c = TaskContainer("t1", "c1", "running", created=NOW, address="10.1.2.3")
    (s,) = plan([assignment()], [c]).report
    assert (s.state, s.address) == ("running", "10.1.2.3")
    assert plan([assignment()], [c], [s]).empty
    moved = TaskContainer("t1", "c1", "running", created=NOW, address="10.1.2.4")
    assert [r.address for r in plan([assignment()], [moved], [s]).report] == ["10.1.2.4"]
