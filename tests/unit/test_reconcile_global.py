from tests.unit.test_reconcile_world import World, make_service, node


def global_world() -> World:
    world = World.with_nodes(make_service(mode="global"), 3)
    world.step()
    world.schedule()
    return world


def test_one_task_per_node_and_a_joining_node_gets_one() -> None:
    world = World.with_nodes(make_service(mode="global"), 3)
    plan = world.step()
    assert sorted(t.node_id for t in plan.create) == ["n1", "n2", "n3"]
    assert all(t.slot == 0 for t in plan.create)
    world.schedule()
    assert world.plan().is_noop
    world.nodes["n4"] = node("n4")
    assert [t.node_id for t in world.step().create] == ["n4"]


def test_drained_node_task_is_shut_down_not_replaced() -> None:
    world = global_world()
    on_n2 = next(t.id for t in world.live() if t.node_id == "n2")
    world.set_availability("n2", "drain")
    plan = world.step()
    assert plan.shutdown == (on_n2,) and not plan.create
    assert world.plan().is_noop


def test_paused_node_keeps_its_task_but_gets_no_new_one() -> None:
    world = global_world()
    world.set_availability("n1", "pause")
    assert world.plan().is_noop
    on_n1 = next(t.id for t in world.live() if t.node_id == "n1")
    world.set_state(on_n1, "failed", 1)
    assert world.plan().is_noop


def test_down_node_task_is_not_replaced_elsewhere() -> None:
    world = global_world()
    world.node_down("n3")
    world.now += 3600
    plan = world.step()
    assert plan.is_noop and plan.requeue_at is None


def test_removed_node_tasks_are_dropped() -> None:
    world = global_world()
    on_n3 = next(t.id for t in world.live() if t.node_id == "n3")
    del world.nodes["n3"]
    assert world.step().remove == (on_n3,)


def test_failed_global_task_restarts_on_the_same_node_after_the_delay() -> None:
    world = global_world()
    on_n1 = next(t.id for t in world.live() if t.node_id == "n1")
    world.set_state(on_n1, "failed", 1)
    plan = world.step()
    assert plan.is_noop and plan.requeue_at == world.now + 5.0
    assert [p.node_id for p in plan.pending] == ["n1"]
    world.now += 5.0
    plan = world.step()
    assert [t.node_id for t in plan.create] == ["n1"] and plan.shutdown == (on_n1,)
