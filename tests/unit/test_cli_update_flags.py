"""`--update-*` / `--rollback-*` flags, and convergence waiting that follows an update's status."""

from __future__ import annotations

import pytest

from agent.errors import InvalidArgument
from controller.api.types import MANUAL_ROLLBACK, Service, ServiceSpec, Task, UpdateConfig, UpdateStatus
from deploy.cli.converge import progress
from deploy.cli.service_flags import SpecFlags, apply_flags, build_spec
from deploy.cli.update_flags import UpdateFlags


def test_flags_set_the_update_and_rollback_configs() -> None:
    spec = build_spec(
        "web",
        SpecFlags(
            image="busybox",
            update=UpdateFlags(2, "10s", "rollback", "1m", 0.25, "start-first"),
            rollback=UpdateFlags(parallelism=0, failure_action="continue", monitor="500ms"),
        ),
    )
    assert spec.update_config == UpdateConfig(
        parallelism=2,
        delay=10.0,
        failure_action="rollback",
        monitor=60.0,
        max_failure_ratio=0.25,
        order="start-first",
    )
    assert spec.rollback_config == UpdateConfig(parallelism=0, failure_action="continue", monitor=0.5)
    # update: only the flags given change; the rest stays.
    changed = apply_flags(spec, SpecFlags(update=UpdateFlags(delay="0s")))
    assert changed.update_config == spec.update_config.model_copy(update={"delay": 0.0})
    assert changed.rollback_config == spec.rollback_config


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (SpecFlags(update=UpdateFlags(parallelism=-1)), "invalid --update-parallelism -1: must be >= 0"),
        (SpecFlags(update=UpdateFlags(delay="soon")), "invalid --update-delay 'soon': expected a duration"),
        (
            SpecFlags(update=UpdateFlags(failure_action="retry")),
            "invalid --update-failure-action 'retry': expected pause or continue or rollback",
        ),
        (
            SpecFlags(rollback=UpdateFlags(failure_action="rollback")),
            "invalid --rollback-failure-action 'rollback': expected pause or continue",
        ),
        (
            SpecFlags(rollback=UpdateFlags(max_failure_ratio=2.0)),
            "invalid --rollback-max-failure-ratio 2.0: must be a fraction between 0 and 1",
        ),
        (
            SpecFlags(update=UpdateFlags(order="sideways")),
            "invalid --update-order 'sideways': expected stop-first",
        ),
    ],
)
def test_bad_flags_name_the_flag(flags: SpecFlags, message: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        apply_flags(ServiceSpec(name="web", image="busybox"), flags)
    assert str(err.value).startswith(message)


def _service(status: UpdateStatus | None) -> Service:
    spec = ServiceSpec(name="web", image="busybox", replicas=1)
    return Service(id="s1", spec=spec, task_version=2, created_at="t", updated_at="t", update_status=status)


def _running() -> list[Task]:
    return [
        Task(
            id="t1",
            service_id="s1",
            service_name="web",
            spec_version=2,
            slot=1,
            node_id="n1",
            state="running",
        )
    ]


def test_waiting_follows_the_update_status() -> None:
    assert progress(_service(None), _running()).converged
    assert not progress(_service(UpdateStatus(state="updating")), _running()).converged  # the monitor period
    assert progress(_service(UpdateStatus(state="completed")), _running()).converged
    paused = progress(_service(UpdateStatus(state="paused", message="update paused due to x")), _running())
    assert not paused.converged and paused.failure == "update paused: update paused due to x"
    rolling = progress(
        _service(UpdateStatus(state="rollback_started", message="update rolled back due to x")), []
    )
    assert not rolling.converged and not rolling.failure
    assert rolling.errors[0] == "rollback: update rolled back due to x"
    stuck = progress(_service(UpdateStatus(state="rollback_paused", message="m")), _running())
    assert stuck.failure == "rollback paused: m"
    rolled = progress(
        _service(UpdateStatus(state="rollback_completed", message="rollback completed (x)")), _running()
    )
    assert not rolled.converged and rolled.failure == "service rolled back: rollback completed (x)"
    asked = UpdateStatus(state="rollback_completed", message=f"rollback completed ({MANUAL_ROLLBACK})")
    assert progress(_service(asked), _running()).converged  # `service rollback` asked for it
