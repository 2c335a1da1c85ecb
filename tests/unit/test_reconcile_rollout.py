"""Rolling updates in the pure reconciler: parallelism, delay, order, monitor, failure actions, status."""

from __future__ import annotations

from typing import Any

from controller.api.types import (
    RestartPolicy,
    Service,
    ServiceMode,
    Task,
    UpdateConfig,
    UpdateState,
    UpdateStatus,
    rolled_back,
    with_spec,
)
from controller.reconcile import Plan, ReconcileSettings
from tests.unit.test_reconcile_world import World, make_service


def running_world(replicas: int = 4, mode: ServiceMode = "replicated", **config: Any) -> World:
    world = World.with_nodes(
        make_service(mode=mode, replicas=replicas, update_config=UpdateConfig.model_validate(config)),
        4,
    )
    world.step()
    world.schedule()
    assert world.step().is_noop
    return world


def service(world: World) -> Service:
    assert world.service is not None
    return world.service


def state(world: World) -> str | None:
    status = service(world).update_status
    return status.state if status else None


def start_update(world: World, **spec: Any) -> None:
    world.update_spec(**({"image": "busybox:2"} | spec))
    assert state(world) is None  # a change of what tasks run starts a new update
    first = world.step()
    assert first.update_status is not None and first.update_status.state == "updating"
    assert not first.create and not first.shutdown  # replacements start once the status is stored


def new_tasks(world: World) -> list[Task]:
    return [t for t in world.wanted() if t.spec_version == service(world).task_version]


def old_tasks(world: World) -> list[Task]:
    return [t for t in world.wanted() if t.spec_version != service(world).task_version]


def in_flight(world: World) -> set[int]:
    """Slots whose new task is not running yet, or whose old task still runs beside it."""
    busy = {t.slot for t in new_tasks(world) if t.state != "running"}
    overlap = {t.slot for t in new_tasks(world)} & {t.slot for t in old_tasks(world) if t.state == "running"}
    return busy | overlap


def run_new(world: World) -> None:
    world.schedule()
    world.confirm_stops()


def test_parallelism_one_with_a_delay_replaces_one_slot_at_a_time() -> None:
    world = running_world(4, parallelism=1, delay=10.0, monitor=5.0)
    start_update(world)
    updated: list[int] = []
    for _ in range(4):
        plan = world.step()
        assert len(plan.create) == 1 and len(plan.shutdown) == 1
        updated.append(plan.create[0].slot)
        assert len(in_flight(world)) == 1
        assert world.plan().is_noop  # its replacement is not running yet
        run_new(world)
        cooling = world.step()
        if len(updated) < 4:
            assert not cooling.create and cooling.requeue_at == world.now + 10.0  # the delay
            world.now += 10.0
    assert sorted(updated) == [1, 2, 3, 4]
    assert not old_tasks(world) and state(world) == "updating"
    # Complete once the last new task has been up for the monitor period.
    done = world.step()
    assert done.requeue_at is not None and done.update_status is None
    world.now = done.requeue_at
    finished = world.step()
    assert finished.update_status is not None and finished.update_status.state == "completed"
    assert finished.update_status.completed_at
    assert world.plan().is_noop


def test_parallelism_two_and_zero() -> None:
    world = running_world(4, parallelism=2)
    start_update(world)
    assert len(world.step().create) == 2
    assert world.plan().is_noop
    run_new(world)
    assert len(world.step().create) == 2
    world = running_world(4, parallelism=0)
    start_update(world)
    assert len(world.step().create) == 4


def test_start_first_keeps_the_old_task_until_the_new_one_runs() -> None:
    world = running_world(2, parallelism=1, order="start-first")
    start_update(world)
    plan = world.step()
    assert len(plan.create) == 1 and not plan.shutdown
    slot = plan.create[0].slot
    old = next(t for t in old_tasks(world) if t.slot == slot)
    assert world.plan().is_noop  # both run until the new one is up
    world.schedule()
    plan = world.step()
    assert old.id in plan.shutdown
    assert len(plan.create) == 1 and plan.create[0].slot != slot  # the next slot, in the same pass


def test_start_first_falls_back_to_stop_first_when_the_new_task_cannot_be_placed() -> None:
    world = running_world(1, order="start-first")
    start_update(world)
    new = world.step().create[0]
    old = old_tasks(world)[0]
    # The scheduler found no node (e.g. the old task holds the only node's host port).
    world.tasks[new.id] = new.model_copy(update={"state": "pending", "message": "host port 80/tcp in use"})
    assert world.step().shutdown == (old.id,)


def test_a_failure_pauses_the_update() -> None:
    world = running_world(4, parallelism=1, failure_action="pause")
    start_update(world)
    new = world.step().create[0]
    run_new(world)
    world.set_state(new.id, "failed", 1)
    plan = world.step()
    assert plan.update_status is not None and plan.update_status.state == "paused"
    assert new.id in plan.update_status.message and "paused" in plan.update_status.message
    for _ in range(5):  # nothing more is replaced, whatever happens
        world.now += 30.0
        run_new(world)
        world.step()
    assert len(old_tasks(world)) == 3 and state(world) == "paused"
    # A change by the user resumes (here: a fixed image starts a new update).
    start_update(world, image="busybox:3")


def test_a_restart_in_place_counts_as_a_failure() -> None:
    world = running_world(2, parallelism=1)
    start_update(world)
    new = world.step().create[0]
    world.schedule()
    world.set_state(new.id, "running", restarts=1)
    assert world.step().update_status == service(world).update_status
    assert state(world) == "paused"


def test_a_failure_after_the_monitor_period_does_not_count() -> None:
    world = running_world(2, parallelism=1, monitor=5.0, delay=0.0)
    start_update(world)
    new = world.step().create[0]
    run_new(world)
    world.now += 6.0
    world.set_state(new.id, "failed", 1)
    world.step()
    assert state(world) == "updating"


def test_max_failure_ratio_tolerates_failures_up_to_it() -> None:
    # One failure among 4 slots is 0.25: within 0.3, so the update goes on.
    world = running_world(4, parallelism=1, max_failure_ratio=0.3)
    start_update(world)
    new = world.step().create[0]
    run_new(world)
    world.set_state(new.id, "failed", 1)
    world.step()
    assert state(world) == "updating"
    second = next(t for t in new_tasks(world) if t.id != new.id and t.state == "new")
    run_new(world)
    world.set_state(second.id, "rejected")
    world.step()
    assert state(world) == "paused"  # 2 of 4 > 0.3


def test_continue_goes_on_despite_failures() -> None:
    world = running_world(3, parallelism=1, failure_action="continue", monitor=1.0)
    start_update(world)
    for _ in range(10):
        for plan_task in world.step().create:
            world.schedule()
            world.set_state(plan_task.id, "running", restarts=2)  # every new task restarts
        world.confirm_stops()
        world.now += 2.0
    assert not old_tasks(world)
    assert state(world) == "completed"


def test_rollback_goes_back_to_the_previous_spec_and_replaces_only_the_new_tasks() -> None:
    world = running_world(4, parallelism=1, failure_action="rollback", monitor=2.0)
    world.update_spec(rollback_config=UpdateConfig(parallelism=0, monitor=1.0))
    before = {t.id for t in world.live()}
    old_version = service(world).task_version
    start_update(world)
    new = world.step().create[0]
    run_new(world)
    world.set_state(new.id, "failed", 1)
    plan = world.step()
    assert plan.rollback and plan.update_status is not None
    assert plan.update_status.state == "rollback_started" and new.id in plan.update_status.message
    assert service(world).spec.image == "busybox" and service(world).task_version == old_version
    for _ in range(4):
        run_new(world)
        world.step()
        world.now += 1.0
    assert state(world) == "rollback_completed"
    live = {t.id for t in world.live()}
    assert len(live) == 4 and all(t.spec_version == old_version for t in world.live())
    assert len(before & live) == 3  # the slots never updated kept their tasks


def test_a_failed_rollback_pauses() -> None:
    world = running_world(2, parallelism=1, failure_action="rollback")
    start_update(world)
    new = world.step().create[0]
    run_new(world)
    world.set_state(new.id, "failed", 1)
    world.step()
    assert state(world) == "rollback_started"
    # The rollback's own replacement fails too.
    replacement = next(t for t in world.step().create)
    run_new(world)
    world.set_state(replacement.id, "failed", 1)
    world.step()
    assert state(world) == "rollback_paused"


def test_scaling_never_starts_an_update() -> None:
    world = running_world(2)
    world.update_spec(bump=False, replicas=4)
    world.update_spec(bump=False, update_config=UpdateConfig(parallelism=3))
    plan = world.step()
    assert len(plan.create) == 2 and plan.update_status is None and state(world) is None


def test_global_services_roll_node_by_node() -> None:
    world = running_world(0, mode="global", parallelism=1, order="start-first")
    start_update(world)
    for _ in range(4):
        plan = world.step()
        assert len(plan.create) == 1
        assert len(in_flight(world)) <= 1
        world.schedule()
    world.step()
    assert not old_tasks(world)


def test_a_job_update_is_completed_at_once() -> None:
    world = running_world(0, mode="replicated-job")
    world.update_spec(image="busybox:2")
    world.service = service(world).model_copy(update={"update_status": UpdateStatus(state="updating")})
    plan: Plan = world.step()
    assert plan.update_status is not None and plan.update_status.state == "completed"


# ---- the service record's versions --------------------------------------------------------


def test_task_versions_are_fresh_and_a_rollback_gives_the_old_one_back() -> None:
    svc = make_service(replicas=2)
    scaled = with_spec(svc, svc.spec.model_copy(update={"replicas": 3}), "t")
    assert scaled.task_version == svc.task_version and scaled.version == 2
    changed = with_spec(scaled, scaled.spec.model_copy(update={"image": "busybox:2"}), "t")
    assert changed.task_version == 3 and changed.previous_task_version == scaled.task_version
    back = rolled_back(changed, "t", UpdateStatus(state="rollback_started"))
    assert back.spec == scaled.spec and back.task_version == scaled.task_version
    again = rolled_back(back, "t", UpdateStatus(state="rollback_started"))
    assert again.spec == changed.spec and again.task_version == changed.task_version
    # A later change never reuses a version tasks may still carry.
    later = with_spec(again, again.spec.model_copy(update={"image": "busybox:4"}), "t")
    assert later.task_version > max(changed.task_version, again.version - 1)


def test_any_change_resets_the_status_but_scaling_lets_an_update_go_on() -> None:
    def status(state: UpdateState, **spec: Any) -> UpdateStatus | None:
        svc = make_service(replicas=2).model_copy(update={"update_status": UpdateStatus(state=state)})
        return with_spec(svc, svc.spec.model_copy(update=spec), "t").update_status

    assert status("paused", replicas=3) is None  # a paused update resumes
    assert status("completed", replicas=3) is None
    assert status("updating", replicas=3) == UpdateStatus(state="updating")
    assert status("rollback_started", replicas=3) == UpdateStatus(state="rollback_started")
    assert status("updating", image="x") is None  # a new update


def test_a_slot_stays_in_the_rollout_after_its_old_record_would_be_pruned() -> None:
    # With no task history kept, the replaced task's record is the only sign the slot is updating.
    world = running_world(4, parallelism=1, monitor=5.0)
    world.settings = ReconcileSettings(task_history_limit=0)
    start_update(world)
    new = world.step().create[0]
    world.confirm_stops()  # the old task stopped; its replacement is not placed yet
    for _ in range(3):
        assert not world.step().create
        assert in_flight(world) == {new.slot}
    run_new(world)
    world.set_state(new.id, "failed", 1)
    world.step()
    assert state(world) == "paused"


def test_a_start_first_replacement_that_may_not_restart_ends_like_stop_first() -> None:
    # Swarm stops the old task once its replacement is running or has failed: a failed one the
    # restart policy does not retry leaves the slot as stop-first would, and the update completes.
    world = running_world(2, parallelism=1, order="start-first", failure_action="continue")
    world.update_spec(restart_policy=RestartPolicy(condition="none"))
    start_update(world)
    new = world.step().create[0]
    old = next(t for t in old_tasks(world) if t.slot == new.slot)
    world.schedule()
    world.set_state(new.id, "failed", 1)
    for _ in range(6):
        plan = world.step()
        assert all(t.slot != new.slot for t in plan.create)  # never retried
        run_new(world)
        world.now += 10.0
    assert world.tasks[old.id].desired_state == "shutdown"
    assert world.tasks[new.id].desired_state == "running"  # the slot holds it, as stop-first leaves it
    assert not old_tasks(world) and state(world) == "completed"
