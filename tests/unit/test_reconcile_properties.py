"""Properties of the reconciler in a randomly perturbed simulated cluster."""

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.api.types import RestartPolicy, UpdateConfig
from controller.reconcile import Plan, ReconcileSettings
from tests.unit.test_reconcile_world import World, make_service

NODES = ["n1", "n2", "n3", "n4"]

event = st.one_of(
    st.tuples(st.just("schedule"), st.just(0)),
    st.tuples(st.just("stops"), st.just(0)),
    st.tuples(st.just("fail"), st.integers(0, 20)),
    st.tuples(st.just("exit0"), st.integers(0, 20)),
    st.tuples(st.just("down"), st.integers(0, 3)),
    st.tuples(st.just("up"), st.integers(0, 3)),
    st.tuples(st.just("drain"), st.integers(0, 3)),
    st.tuples(st.just("active"), st.integers(0, 3)),
    st.tuples(st.just("scale"), st.integers(0, 7)),
    st.tuples(st.just("bump"), st.just(0)),
    st.tuples(st.just("time"), st.integers(1, 40)),
)


def perturb(world: World, kind: str, arg: int) -> None:
    live = sorted(world.live(), key=lambda t: t.id)
    match kind:
        case "schedule":
            world.schedule()
        case "stops":
            world.confirm_stops()
        case "fail" | "exit0" if live:
            task = live[arg % len(live)]
            if task.state == "running":
                world.set_state(
                    task.id, "failed" if kind == "fail" else "complete", 1 if kind == "fail" else 0
                )
        case "down":
            if world.nodes[NODES[arg]].ready:
                world.node_down(NODES[arg])
        case "up":
            world.node_up(NODES[arg])
        case "drain" | "active":
            world.set_availability(NODES[arg], kind)
        case "scale":
            world.update_spec(bump=False, replicas=arg)
        case "bump":
            world.update_spec(image=f"busybox:{world.now}")
        case "time":
            world.now += arg


def check(world: World) -> None:
    assert world.service is not None
    version = world.service.task_version
    for current in (True, False):
        wanted = [t for t in world.wanted() if (t.spec_version == version) == current]
        per_slot = Counter((t.slot, t.node_id if t.slot == 0 else "") for t in wanted)
        assert max(per_slot.values(), default=0) <= 1
    if world.service.spec.update_config.order == "stop-first":
        per_slot = Counter((t.slot, t.node_id if t.slot == 0 else "") for t in world.wanted())
        assert max(per_slot.values(), default=0) <= 1
    spec = world.service.spec
    if spec.mode == "replicated":
        # start-first: an out-of-date task may keep running next to its slot's replacement.
        assert len([t for t in world.wanted() if t.spec_version == version]) <= spec.replicas
        extra = 0 if spec.update_config.order == "stop-first" else spec.replicas
        assert len(world.wanted()) <= spec.replicas + extra
    if spec.mode == "replicated-job":
        assert len(world.live()) <= spec.max_concurrent
    again = world.plan()
    assert again.is_noop, again


@settings(max_examples=300, deadline=None)
@given(
    mode=st.sampled_from(["replicated", "global", "replicated-job"]),
    condition=st.sampled_from(["any", "on-failure", "none"]),
    max_attempts=st.integers(0, 3),
    cap=st.integers(1, 3),
    parallelism=st.integers(0, 2),
    order=st.sampled_from(["stop-first", "start-first"]),
    failure_action=st.sampled_from(["pause", "continue", "rollback"]),
    events=st.lists(event, min_size=10, max_size=60),
)
def test_plans_keep_the_invariants_and_settle(
    mode: str,
    condition: str,
    max_attempts: int,
    cap: int,
    parallelism: int,
    order: str,
    failure_action: str,
    events: list[tuple[str, int]],
) -> None:
    policy = RestartPolicy.model_validate(
        {"condition": condition, "delay": 10.0, "max_attempts": max_attempts}
    )
    svc = make_service(
        mode=mode,  # type: ignore[arg-type]
        replicas=3,
        policy=policy,
        total_completions=4,
        max_concurrent=2,
        update_config=UpdateConfig.model_validate(
            {"parallelism": parallelism, "order": order, "failure_action": failure_action, "delay": 3.0}
        ),
    )
    knobs = ReconcileSettings(node_down_grace=20.0, max_lost_nodes_per_pass=cap, task_history_limit=2)
    world = World.with_nodes(svc, len(NODES), settings=knobs)
    step(world)
    check(world)
    for kind, arg in events:
        perturb(world, kind, arg)
        plan = step(world)
        assert plan.requeue_at is None or plan.requeue_at > world.now
        check(world)


def step(world: World) -> Plan:
    """One pass, and the pass a written update status asks for (an update starts replacing only
    once its status is stored); a status is never written twice in a row."""
    world.now += 0.01  # passes happen at distinct times (an update's tasks postdate its start)
    plan = world.step()
    if plan.update_status is not None:
        world.now += 0.01
        plan = world.step()
        assert plan.update_status is None or plan.update_status.state != "updating"
    return plan


@settings(max_examples=100, deadline=None)
@given(
    total=st.integers(1, 6),
    concurrent=st.integers(1, 3),
    codes=st.lists(st.sampled_from([0, 0, 1]), min_size=30, max_size=30),
)
def test_jobs_finish_exactly_and_never_exceed_concurrency(
    total: int, concurrent: int, codes: list[int]
) -> None:
    policy = RestartPolicy(condition="on-failure", delay=0.0)
    svc = make_service(
        mode="replicated-job", total_completions=total, max_concurrent=concurrent, policy=policy
    )
    world = World.with_nodes(svc, 2)
    results = iter(codes + [0] * 20)
    for _ in range(60):
        world.step()
        check(world)
        assert len(world.live()) <= concurrent
        world.schedule()
        running = sorted((t for t in world.live() if t.state == "running"), key=lambda t: t.id)
        if not running:
            break
        code = next(results)
        world.set_state(running[0].id, "complete" if code == 0 else "failed", code)
    ok = [t for t in world.tasks.values() if t.state == "complete" and t.exit_code == 0]
    assert len(ok) == total
