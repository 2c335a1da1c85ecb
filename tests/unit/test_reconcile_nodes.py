from controller.reconcile import ReconcileSettings
from tests.unit.test_reconcile_world import World, make_service

SETTINGS = ReconcileSettings(node_down_grace=30.0, max_lost_nodes_per_pass=1, retry_interval=5.0)


def spread_world(replicas: int, nodes: int) -> World:
    world = World.with_nodes(make_service(replicas=replicas), nodes, settings=SETTINGS)
    world.step()
    world.schedule()
    return world


def on(world: World, node_id: str) -> set[str]:
    return {t.id for t in world.live() if t.node_id == node_id}


def test_tasks_of_a_down_node_move_only_after_the_grace_period() -> None:
    world = spread_world(3, 3)
    lost = on(world, "n1")
    world.node_down("n1")
    world.now += 10
    plan = world.step()
    assert plan.is_noop and plan.requeue_at == world.down_since["n1"] + 30.0
    world.now += 20
    plan = world.step()
    assert set(plan.shutdown) == lost and len(plan.create) == len(lost)
    assert world.plan().is_noop
    assert len(world.wanted()) == 3


def test_lost_nodes_move_one_at_a_time() -> None:
    world = spread_world(4, 4)
    for n in ("n1", "n2", "n3"):
        world.node_down(n)
        world.now += 1
    world.now += 60
    first = on(world, "n1")
    plan = world.step()
    assert set(plan.shutdown) == first  # n1 went down first
    assert plan.requeue_at == world.now + 5.0
    assert world.plan().is_noop  # n1's replacement is not running yet
    moved = {"n1"}
    for _ in range(2):
        world.schedule()
        plan = world.step()
        nodes = {world.tasks[t].node_id for t in plan.shutdown}
        assert len(nodes) == 1 and not nodes & moved
        moved |= nodes
    assert moved == {"n1", "n2", "n3"}
    world.schedule()
    assert world.step().is_noop
    assert len(world.wanted()) == 4


def test_returning_node_never_brings_back_extra_replicas() -> None:
    world = spread_world(2, 2)
    world.node_down("n1")
    world.now += 31
    world.step()
    world.schedule()
    world.node_up("n1")
    assert world.plan().is_noop
    world.confirm_stops()
    assert len(world.wanted()) == 2 and len(world.live()) == 2


def test_drained_node_tasks_are_replaced_at_once() -> None:
    world = spread_world(2, 3)
    drained = on(world, "n2")
    world.set_availability("n2", "drain")
    plan = world.step()
    assert set(plan.shutdown) == drained and len(plan.create) == len(drained)
    world.schedule()
    assert not on(world, "n2")
