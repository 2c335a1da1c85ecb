"""Health checks, the pure parts: probe argv, Docker's state machine, validation, the --health-*
flags (container and service), Compose's healthcheck, and what the task worker does with health."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent import health
from agent.errors import InvalidArgument
from agent.models import HealthCheck, HealthLogEntry, HealthState, validate_healthcheck
from agent.tasks.plan import container_status, plan_node
from agent.tasks.runtime import RuntimeStatus, TaskContainer
from controller.api.convert import from_message, to_message
from controller.api.proto import shoal_pb2
from controller.api.types import Assignment, DesiredState, Health, ServiceSpec, Task, TaskStatus
from controller.api.types import HealthCheck as SpecHealthCheck
from controller.api.validation import validate_spec
from deploy.cli.container import build_request
from deploy.cli.health_flags import HealthFlags, apply_health_flags
from deploy.cli.service import task_rows
from deploy.cli.service_flags import SpecFlags, apply_flags, build_spec
from deploy.compose.to_specs import load_stack

NOW = "2025-01-01T00:00:00Z"


def entry(code: int, output: str = "") -> HealthLogEntry:
    return HealthLogEntry(start=NOW, end=NOW, exit_code=code, output=output)


def run(check: HealthCheck, codes: list[int], since_start: float = 100.0) -> HealthState:
    state = health.initial()
    for code in codes:
        state = health.record(state, entry(code, f"exit {code}"), check, since_start)
    return state


# ---- probe argv and the state machine ------------------------------------------------------


def test_probe_argv() -> None:
    assert health.probe_argv(HealthCheck(test=["CMD", "curl", "-f", "x"])) == ["curl", "-f", "x"]
    assert health.probe_argv(HealthCheck(test=["CMD-SHELL", "curl -f x || exit 1"])) == [
        "/bin/sh",
        "-c",
        "curl -f x || exit 1",
    ]
    assert health.probe_argv(HealthCheck(test=["NONE"])) is None
    assert health.probe_argv(None) is None


def test_starting_then_healthy_then_unhealthy_after_retries_failures_in_a_row() -> None:
    check = HealthCheck(test=["CMD", "true"], retries=3)
    assert health.initial() == HealthState(status="starting", failing_streak=0, log=[])
    assert run(check, [0]).status == "healthy"
    # Two failures in a row, fewer than retries: still healthy.
    after = run(check, [0, 1, 1])
    assert (after.status, after.failing_streak, [e.exit_code for e in after.log]) == ("healthy", 2, [0, 1, 1])
    assert run(check, [0, 1, 1, 1]).status == "unhealthy"
    # One success clears the streak and makes it healthy again.
    assert run(check, [0, 1, 1, 1, 0]).model_dump(exclude={"log"}) == {
        "status": "healthy",
        "failing_streak": 0,
    }
    # A container that never passed goes straight from starting to unhealthy.
    assert [run(check, [1] * n).status for n in (1, 2, 3)] == ["starting", "starting", "unhealthy"]
    # Any non-zero exit (and a timeout's -1) is a failure.
    assert run(HealthCheck(test=["CMD", "x"], retries=1), [health.TIMED_OUT]).status == "unhealthy"


def test_failures_in_the_start_period_do_not_count_until_the_first_success() -> None:
    check = HealthCheck(test=["CMD", "true"], retries=1, start_period=10.0)
    early = run(check, [1, 1, 1], since_start=5.0)
    assert (early.status, early.failing_streak, len(early.log)) == ("starting", 0, 3)
    assert run(check, [1], since_start=10.0).status == "unhealthy"
    # Once healthy, failures count even within the start period (moby's rule).
    assert run(check, [0, 1], since_start=5.0).status == "unhealthy"


def test_the_log_keeps_the_last_five_results() -> None:
    state = run(HealthCheck(test=["CMD", "x"], retries=100), list(range(8)))
    assert [e.exit_code for e in state.log] == [3, 4, 5, 6, 7]
    assert state.failing_streak == 7


def test_unhealthy_message_names_the_last_output_on_one_line() -> None:
    state = run(HealthCheck(test=["CMD", "x"], retries=1), [1])
    state = health.record(state, entry(2, "connection\n  refused\n"), HealthCheck(test=["CMD", "x"]), 100)
    assert health.unhealthy_message(state) == "container unhealthy: connection refused"
    quiet = health.record(health.initial(), entry(7), HealthCheck(test=["CMD", "x"], retries=1), 100)
    assert health.unhealthy_message(quiet) == "container unhealthy: the probe exited with code 7"
    assert health.is_unhealthy_message(health.unhealthy_message(quiet))
    assert not health.is_unhealthy_message("exit code 1")
    assert health.clip_output(b"x" * 10_000) == "x" * health.MAX_OUTPUT


# ---- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"test": []}, "invalid healthcheck.test []: must not be empty"),
        (
            {"test": ["RUN", "x"]},
            "invalid healthcheck.test ['RUN', 'x']: must start with CMD, CMD-SHELL or NONE",
        ),
        ({"test": ["CMD"]}, "invalid healthcheck.test ['CMD']: CMD needs a command after it"),
        (
            {"test": ["CMD-SHELL", " "]},
            "invalid healthcheck.test ['CMD-SHELL', ' ']: CMD-SHELL needs a command after it",
        ),
        (
            {"test": ["CMD", "true"], "interval": 0},
            "invalid healthcheck.interval 0.0: must be a duration greater",
        ),
        (
            {"test": ["CMD", "true"], "timeout": -1},
            "invalid healthcheck.timeout -1.0: must be a duration greater",
        ),
        ({"test": ["CMD", "true"], "retries": 0}, "invalid healthcheck.retries 0: must be at least 1"),
        ({"test": ["CMD", "true"], "start_period": -1}, "invalid healthcheck.start_period -1.0: must not be"),
    ],
)
def test_validation_names_the_field_the_value_and_the_rule(fields: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        validate_healthcheck("healthcheck", HealthCheck.model_validate(fields))
    assert str(exc.value).startswith(message)
    # The controller checks a service spec's healthcheck with the same rules.
    spec = ServiceSpec(name="web", image="busybox", healthcheck=SpecHealthCheck.model_validate(fields))
    with pytest.raises(InvalidArgument) as exc:
        validate_spec(spec)
    assert str(exc.value).startswith(message)


def test_a_valid_check_passes() -> None:
    validate_healthcheck("healthcheck", HealthCheck(test=["NONE"]))
    validate_healthcheck("healthcheck", HealthCheck(test=["CMD-SHELL", "true"], interval=0.2, retries=1))


# ---- flags -------------------------------------------------------------------------------


def test_health_flags() -> None:
    flags = HealthFlags(
        cmd="curl -f localhost", interval="1m30s", timeout="500ms", retries=2, start_period="5s"
    )
    assert apply_health_flags(None, flags) == {
        "test": ["CMD-SHELL", "curl -f localhost"],
        "interval": 90.0,
        "timeout": 0.5,
        "retries": 2,
        "start_period": 5.0,
    }
    current = {"test": ["CMD", "true"], "interval": 3.0}
    assert apply_health_flags(current, HealthFlags()) == current
    assert apply_health_flags(current, HealthFlags(retries=5)) == current | {"retries": 5}
    assert apply_health_flags(current, HealthFlags(no_healthcheck=True)) is None


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (HealthFlags(interval="5s"), "invalid --health-interval '5s': needs --health-cmd"),
        (HealthFlags(cmd="true", no_healthcheck=True), "invalid --no-healthcheck '--health-cmd': conflicts"),
        (HealthFlags(cmd=" "), "invalid --health-cmd ' ': must not be empty"),
        (
            HealthFlags(cmd="true", interval="0s"),
            "invalid --health-interval '0s': must be a duration greater",
        ),
        (HealthFlags(cmd="true", timeout="soon"), "invalid --health-timeout 'soon': expected a duration"),
        (HealthFlags(cmd="true", retries=0), "invalid --health-retries 0: must be at least 1"),
        (HealthFlags(cmd="true", start_period="-1s"), "invalid --health-start-period"),
    ],
)
def test_bad_health_flags(flags: HealthFlags, message: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        apply_health_flags(None, flags)
    assert str(exc.value).startswith(message)


def test_container_run_flags_make_the_request() -> None:
    flags = HealthFlags(cmd="true", interval="2s", retries=4)
    fields = "command name env env_file volume tmpfs mount restart memory cpus pids_limit entrypoint"
    fields += " workdir user hostname stop_signal stop_timeout label cap_add"
    nothing: dict[str, Any] = dict.fromkeys(fields.split())
    req = build_request("busybox", network="none", privileged=False, health=flags, **nothing)
    assert req.healthcheck == HealthCheck(test=["CMD-SHELL", "true"], interval=2.0, retries=4)


def test_service_create_and_update_flags() -> None:
    spec = build_spec(
        "web", SpecFlags(image="busybox", health=HealthFlags(cmd="wget -q -O- x", timeout="3s"))
    )
    assert spec.healthcheck == SpecHealthCheck(test=["CMD-SHELL", "wget -q -O- x"], timeout=3.0)
    updated = apply_flags(spec, SpecFlags(health=HealthFlags(interval="10s", retries=1)))
    assert updated.healthcheck == SpecHealthCheck(
        test=["CMD-SHELL", "wget -q -O- x"], interval=10.0, timeout=3.0, retries=1
    )
    assert apply_flags(updated, SpecFlags(image="busybox:1")).healthcheck == updated.healthcheck
    assert apply_flags(updated, SpecFlags(health=HealthFlags(no_healthcheck=True))).healthcheck is None
    with pytest.raises(InvalidArgument, match="--health-retries"):
        apply_flags(ServiceSpec(name="web", image="busybox"), SpecFlags(health=HealthFlags(retries=2)))


# ---- compose -------------------------------------------------------------------------------


def compose(tmp_path: Path, healthcheck: str) -> list[ServiceSpec]:
    path = tmp_path / "compose.yml"
    body = textwrap.indent(textwrap.dedent(healthcheck).strip(), "      ")
    path.write_text(f"services:\n  web:\n    image: busybox\n    healthcheck:\n{body}\n")
    return load_stack(path, "shop", {}).specs


def test_compose_healthcheck(tmp_path: Path) -> None:
    [web] = compose(
        tmp_path,
        """
        test: curl -f http://localhost || exit 1
        interval: 1m30s
        timeout: 10s
        retries: 3
        start_period: 40s
        """,
    )
    assert web.healthcheck == SpecHealthCheck(
        test=["CMD-SHELL", "curl -f http://localhost || exit 1"],
        interval=90.0,
        timeout=10.0,
        retries=3,
        start_period=40.0,
    )
    [web] = compose(tmp_path, 'test: ["CMD", "true"]')
    assert web.healthcheck == SpecHealthCheck(test=["CMD", "true"])
    assert compose(tmp_path, "disable: true")[0].healthcheck is None
    assert compose(tmp_path, "test: [NONE]")[0].healthcheck is None


def test_compose_start_interval_is_ignored_with_the_one_warning(tmp_path: Path) -> None:
    """Valid Compose that Shoal cannot honour (no faster probing while starting): accepted, listed."""
    path = tmp_path / "compose.yml"
    path.write_text(
        "services:\n  web:\n    image: busybox\n    healthcheck:\n"
        "      test: [CMD, 'true']\n      start_period: 10s\n      start_interval: 1s\n"
    )
    stack = load_stack(path, "shop", {})
    assert stack.specs[0].healthcheck == SpecHealthCheck(test=["CMD", "true"], start_period=10.0)
    [warning] = [w for w in stack.warnings() if w.startswith("Ignoring")]
    assert "services.web.healthcheck.start_interval" in warning


@pytest.mark.parametrize(
    ("healthcheck", "message"),
    [
        (
            "test: [CMD, 'true']\ninterval: soon",
            "services.web.healthcheck.interval: 'soon': expected a duration",
        ),
        (
            "test: [CMD, 'true']\ntimeout: 0s",
            "services.web.healthcheck.timeout: 0.0: must be a duration greater",
        ),
        ("test: [CMD, 'true']\nretries: 0", "services.web.healthcheck.retries: 0: must be at least 1"),
        ("test: [RUN, 'true']", "services.web.healthcheck.test: ['RUN', 'true']: must start with CMD"),
        ("interval: 5s", "services.web.healthcheck.test: this field is required"),
        ("test: [CMD, 'true']\ndisable: true", "services.web.healthcheck.disable: true cannot be combined"),
        ("test: [CMD, 'true']\nstart_interval: 5s\nbogus: 1", "services.web.healthcheck.bogus: unknown key"),
    ],
)
def test_compose_healthcheck_errors(tmp_path: Path, healthcheck: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        compose(tmp_path, healthcheck)
    assert str(exc.value).startswith(f"{tmp_path / 'compose.yml'}: {message}")


# ---- the task worker's plan ------------------------------------------------------------------


def assignment(desired: DesiredState = "running") -> Assignment:
    task = Task(id="t1", service_id="s", service_name="web", spec_version=1, slot=1, node_id="n1")
    task = task.model_copy(update={"desired_state": desired, "state": "assigned"})
    return Assignment(task=task, spec=ServiceSpec(name="web", image="busybox"))


def ctr(
    status: RuntimeStatus = "running", health_: Health = "", exit_code: int = 0, error: str = ""
) -> TaskContainer:
    return TaskContainer("t1", "c1", status, exit_code, error=error, health=health_, created=NOW)


def test_the_worker_stops_an_unhealthy_running_task_container() -> None:
    actions = plan_node({"t1": assignment()}, [ctr(health_="unhealthy")], {}, NOW)
    assert actions.stop_unhealthy == ("c1",) and not actions.stop and actions.touches_runtime
    [status] = actions.report
    assert (status.state, status.health) == ("running", "unhealthy")
    # Not while it is restarting, nor when it is being shut down anyway (that is a plain stop).
    assert not plan_node({"t1": assignment()}, [ctr("restarting", "unhealthy")], {}, NOW).stop_unhealthy
    down = plan_node({"t1": assignment("shutdown")}, [ctr(health_="unhealthy")], {}, NOW)
    assert down.stop == ("c1",) and not down.stop_unhealthy
    for ok in ("", "starting", "healthy"):
        assert not plan_node({"t1": assignment()}, [ctr(health_=ok)], {}, NOW).stop_unhealthy


def test_health_is_reported_on_change_only() -> None:
    starting = container_status(ctr(health_="starting"), False, NOW)
    assert starting is not None and starting.health == "starting"
    reported = {"t1": starting}
    assert plan_node({"t1": assignment()}, [ctr(health_="starting")], reported, NOW).empty
    [healthy] = plan_node({"t1": assignment()}, [ctr(health_="healthy")], reported, NOW).report
    assert healthy.health == "healthy"


def test_a_container_stopped_for_being_unhealthy_fails_with_why() -> None:
    message = "container unhealthy: connection refused"
    for code in (0, 143):
        s = container_status(ctr("exited", "unhealthy", exit_code=code, error=message), False, NOW)
        assert s is not None
        assert (s.state, s.message, s.exit_code, s.health) == ("failed", message, code, "")


def test_service_ps_shows_health_next_to_the_state() -> None:
    base = Task(id="t", service_id="s", service_name="web", spec_version=1, slot=1, updated_at=NOW)
    tasks = [
        base.model_copy(update={"id": f"t{i}", "slot": i, "state": state, "health": health_})
        for i, (state, health_) in enumerate(
            [("running", "healthy"), ("running", "starting"), ("running", "")]
        )
    ]
    tasks.append(base.model_copy(update={"id": "t9", "slot": 9, "state": "failed", "message": "exit code 1"}))
    states = [row[6] for row in task_rows(tasks, {}, {}, now=datetime(2025, 1, 1, 0, 0, 5, tzinfo=UTC))]
    assert states == [
        "Running 5 seconds ago (healthy)",
        "Running 5 seconds ago (health: starting)",
        "Running 5 seconds ago",
        "Failed 5 seconds ago",
    ]
    assert TaskStatus(task_id="t", state="running", health="healthy", timestamp=NOW).health == "healthy"


def test_the_control_api_carries_healthchecks_and_task_health() -> None:
    check = SpecHealthCheck(
        test=["CMD-SHELL", "true"], interval=0.5, timeout=2.0, retries=4, start_period=1.5
    )
    spec = ServiceSpec(name="web", image="busybox", healthcheck=check)
    assert from_message(ServiceSpec, to_message(spec, shoal_pb2.ServiceSpec())) == spec
    bare = ServiceSpec(name="web", image="busybox")
    assert from_message(ServiceSpec, to_message(bare, shoal_pb2.ServiceSpec())).healthcheck is None
    task = Task(id="t", service_id="s", service_name="web", spec_version=1, state="running", health="healthy")
    assert from_message(Task, to_message(task, shoal_pb2.Task())) == task
