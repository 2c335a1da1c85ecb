import pytest

from controller.api.types import RestartPolicy, Task
from controller.reconcile.restart import restart_at
from tests.unit.test_reconcile_world import World, make_service


def failing_world(**policy: object) -> tuple[World, str]:
    world = World.with_nodes(make_service(policy=RestartPolicy.model_validate(policy)), 2)
    world.step()
    world.schedule()
    return world, world.live()[0].id


@pytest.mark.parametrize(
    ("condition", "state", "code", "restarts"),
    [
        ("any", "complete", 0, True),
        ("any", "failed", 1, True),
        ("on-failure", "failed", 1, True),
        ("on-failure", "rejected", None, True),
        ("on-failure", "complete", 0, False),
        ("none", "failed", 1, False),
    ],
)
def test_condition(condition: str, state: str, code: int | None, restarts: bool) -> None:
    world, tid = failing_world(condition=condition, delay=0.0)
    world.set_state(tid, state, code)  # type: ignore[arg-type]
    plan = world.step()
    assert bool(plan.create) is restarts
    assert plan.shutdown == ((tid,) if restarts else ())
    assert world.plan().is_noop


def test_delay_is_respected_through_requeue_at() -> None:
    world, tid = failing_world(delay=7.0)
    world.set_state(tid, "failed", 1)
    failed_at = world.now
    world.now += 3
    plan = world.step()
    assert plan.is_noop and plan.requeue_at == failed_at + 7.0
    assert [(p.replaces, p.slot) for p in plan.pending] == [(tid, 1)]
    world.now = failed_at + 7.0
    plan = world.step()
    assert [t.slot for t in plan.create] == [1] and plan.shutdown == (tid,)
    assert plan.requeue_at is None


def test_max_attempts_counts_restarts_in_the_slot_history() -> None:
    world, _ = failing_world(delay=0.0, max_attempts=2)
    for _ in range(2):
        world.set_state(world.live()[0].id, "failed", 1)
        assert len(world.step().create) == 1
        world.schedule()
    world.set_state(world.live()[0].id, "failed", 1)
    assert world.step().is_noop  # third failure: two restarts were allowed, give up
    world.now += 10_000
    assert world.plan().is_noop  # window 0: the decision never changes


def test_window_forgets_old_attempts() -> None:
    policy = RestartPolicy(delay=0.0, max_attempts=1, window=60.0)
    assert restart_at(policy, _t(), ended=100.0, earlier_ends=[50.0]) is None
    assert restart_at(policy, _t(), ended=100.0, earlier_ends=[30.0]) == 100.0
    world, _ = failing_world(delay=0.0, max_attempts=1, window=60.0)
    world.set_state(world.live()[0].id, "failed", 1)
    world.step()
    world.schedule()
    world.now += 61
    world.set_state(world.live()[0].id, "failed", 1)
    assert len(world.step().create) == 1


def test_new_version_resets_attempts_and_skips_the_delay() -> None:
    world, tid = failing_world(delay=30.0, max_attempts=1)
    world.set_state(tid, "failed", 1)
    world.update_spec(image="busybox:fixed")
    plan = world.step()
    assert [t.spec_version for t in plan.create] == [2] and plan.shutdown == (tid,)


def _t() -> Task:
    return Task(id="x", service_id="s", service_name="web", spec_version=1, state="failed", exit_code=1)


def test_in_place_restarts_by_the_agent_count_toward_max_attempts() -> None:
    world, tid = failing_world(delay=0.0, max_attempts=3)
    # The agent restarted the container twice in place before it failed for good: one attempt left.
    world.tasks[tid] = world.tasks[tid].model_copy(update={"restarts": 2})
    world.set_state(tid, "failed", 1)
    assert len(world.step().create) == 1
    world.schedule()
    world.set_state(world.live()[0].id, "failed", 1)
    assert world.step().is_noop  # 2 in place + 1 replacement = 3 attempts: give up
