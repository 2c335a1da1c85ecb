from controller.api.types import UpdateConfig
from controller.reconcile import ReconcileSettings
from tests.unit.test_reconcile_world import World, make_service


def running_world(replicas: int) -> World:
    world = World.with_nodes(make_service(replicas=replicas), 3)
    world.step()
    world.schedule()
    return world


def test_six_replicas_create_six_tasks_in_slots_one_to_six() -> None:
    world = World.with_nodes(make_service(replicas=6), 3)
    plan = world.step()
    assert sorted(t.slot for t in plan.create) == [1, 2, 3, 4, 5, 6]
    assert all(t.state == "new" and t.desired_state == "running" and t.spec_version == 1 for t in plan.create)
    assert not plan.shutdown and not plan.remove and plan.requeue_at is None
    assert world.plan().is_noop


def test_scale_up_adds_only_the_missing_slots() -> None:
    world = running_world(6)
    world.update_spec(bump=False, replicas=9)
    plan = world.step()
    assert sorted(t.slot for t in plan.create) == [7, 8, 9]
    assert not plan.shutdown


def test_scale_down_shuts_down_the_highest_slots() -> None:
    world = running_world(6)
    by_slot = {t.slot: t.id for t in world.live()}
    world.update_spec(bump=False, replicas=2)
    plan = world.step()
    assert sorted(plan.shutdown) == sorted(by_slot[s] for s in (3, 4, 5, 6))
    assert not plan.create
    assert world.slots() == [1, 2]
    world.confirm_stops()
    # Records of slots that no longer exist go once their tasks have stopped.
    assert sorted(world.step().remove) == sorted(by_slot[s] for s in (3, 4, 5, 6))
    assert world.plan().is_noop


def test_version_bump_replaces_every_task_in_its_slot() -> None:
    world = running_world(3)
    old = {t.id for t in world.live()}
    world.update_spec(image="busybox:2", update_config=UpdateConfig(parallelism=0))
    started = world.step()  # the update's status is written first
    assert started.update_status is not None and started.update_status.state == "updating"
    assert not started.create and not started.shutdown
    plan = world.step()
    assert set(plan.shutdown) == old
    assert sorted(t.slot for t in plan.create) == [1, 2, 3]
    assert world.service is not None
    assert all(t.spec_version == world.service.task_version for t in plan.create)
    assert world.plan().is_noop


def test_history_is_bounded_per_slot() -> None:
    world = running_world(1)
    for i in range(8):
        world.update_spec(image=f"busybox:{i}")
        world.step()
        world.step()
        world.schedule()
        world.confirm_stops()
    world.step()
    assert len(world.tasks) == 1 + ReconcileSettings().task_history_limit
    assert world.plan().is_noop
