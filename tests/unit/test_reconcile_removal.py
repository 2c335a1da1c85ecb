from tests.unit.test_reconcile_world import World, make_service


def test_removed_service_stops_everything_then_drops_the_records() -> None:
    world = World.with_nodes(make_service(replicas=3), 2)
    world.step()
    world.schedule()
    world.set_state(world.live()[0].id, "failed", 1)
    failed = next(t.id for t in world.tasks.values() if t.state == "failed")
    world.service = None
    plan = world.step()
    assert plan.remove == (failed,) and len(plan.shutdown) == 2 and not plan.create
    assert world.plan().is_noop  # waiting for the agents
    world.confirm_stops()
    assert len(world.step().remove) == 2
    assert not world.tasks


def test_recreated_service_replaces_the_old_ones_tasks() -> None:
    world = World.with_nodes(make_service(replicas=1), 1)
    world.step()
    world.schedule()
    old = world.live()[0].id
    assert world.service is not None
    world.service = world.service.model_copy(update={"id": "svc2"})
    plan = world.step()
    assert plan.shutdown == (old,) and [t.service_id for t in plan.create] == ["svc2"]
