from controller.api.types import RestartPolicy
from tests.unit.test_reconcile_world import World, make_service


def job(total: int, concurrent: int, **policy: object) -> World:
    service = make_service(
        mode="replicated-job",
        total_completions=total,
        max_concurrent=concurrent,
        policy=RestartPolicy.model_validate({"condition": "on-failure", "delay": 0.0} | policy),
    )
    return World.with_nodes(service, 2)


def test_five_completions_two_at_a_time_with_failures() -> None:
    world = job(5, 2)
    outcomes = iter([0, 1, 0, 0, 1, 0, 0, 0, 0, 0])  # exit codes, in the order tasks finish
    peak = 0
    for _ in range(50):
        world.step()
        assert world.plan().is_noop
        world.schedule()
        running = [t for t in world.live() if t.state == "running"]
        peak = max(peak, len(running))
        assert len(world.live()) <= 2
        if not running:
            break
        code = next(outcomes)
        world.set_state(running[0].id, "complete" if code == 0 else "failed", code)
        world.now += 1
    successes = [t for t in world.tasks.values() if t.state == "complete" and t.exit_code == 0]
    assert len(successes) == 5 and sorted(t.slot for t in successes) == [1, 2, 3, 4, 5]
    assert peak == 2
    assert world.step().is_noop


def test_condition_none_gives_a_failed_slot_up() -> None:
    world = job(1, 1, condition="none")
    world.step()
    world.schedule()
    world.set_state(world.live()[0].id, "failed", 2)
    assert world.step().is_noop


def test_new_version_reruns_the_job() -> None:
    world = job(2, 2)
    world.step()
    world.schedule()
    for t in world.live():
        world.set_state(t.id, "complete", 0)
    assert world.step().is_noop
    world.update_spec(command=["true"])
    assert sorted(t.slot for t in world.step().create) == [1, 2]
