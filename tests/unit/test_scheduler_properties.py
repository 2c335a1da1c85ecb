"""Hypothesis properties of `schedule` over random clusters, specs and existing tasks."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.api.types import NodeInfo, ServiceSpec, Task
from controller.scheduler import ClusterSnapshot, schedule
from tests.unit.test_scheduler_fixtures import CPU, GB, node, placed, snapshot, spec, tasks

nodes_st = st.lists(
    st.builds(
        lambda i, cpus, mem, zone, availability, ready: node(
            f"n{i}",
            cpus=cpus,
            memory_gb=mem,
            labels={"zone": zone} if zone else {},
            availability=availability,
            ready=ready,
        ),
        st.integers(0, 10_000),
        st.integers(0, 8),
        st.integers(0, 16),
        st.sampled_from(["", "a", "b", "c"]),
        st.sampled_from(["active", "active", "active", "pause", "drain"]),
        st.sampled_from([True, True, True, False]),
    ),
    max_size=8,
    unique_by=lambda n: n.id,
)

specs_st = st.builds(
    lambda cpus, mem, max_per_node, ports, prefs, scheduling: spec(
        cpus=cpus,
        memory_gb=mem,
        max_per_node=max_per_node,
        ports=ports,
        preferences=prefs,
        scheduling=scheduling,
    ),
    st.sampled_from([0, 0.5, 1, 2.5]),
    st.sampled_from([0, 0.5, 1, 3]),
    st.integers(0, 3),
    st.sampled_from([[], [], [80]]),
    st.sampled_from([[], ["spread=node.labels.zone"]]),
    st.sampled_from(["spread", "binpack"]),
)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[NodeInfo], ServiceSpec, list[Task], list[Task]]:
    nodes = draw(nodes_st)
    s = draw(specs_st)
    existing: list[Task] = []
    for n in nodes:
        # Existing tasks of this service and another one, as placed: they may over-commit a node
        # that shrank, but the plan must never add to an over-committed resource.
        existing += placed(tasks(draw(st.integers(0, 2)), "web", start=100 + len(existing)), n.id)
        existing += placed(tasks(draw(st.integers(0, 2)), "other", start=100 + len(existing)), n.id)
    new = tasks(draw(st.integers(0, 25)))
    return nodes, s, existing, new


def build(nodes: list[NodeInfo], s: ServiceSpec, existing: list[Task]) -> ClusterSnapshot:
    return snapshot(nodes, existing, s, spec("other", cpus=1, memory_gb=1))


@settings(max_examples=300, deadline=None)
@given(scenarios(), st.integers(0, 2**32))
def test_plan_invariants(
    scenario: tuple[list[NodeInfo], ServiceSpec, list[Task], list[Task]], seed: int
) -> None:
    nodes, s, existing, new = scenario
    before = build(nodes, s, existing)
    plan = schedule(before, s, new, seed)

    # Every task ends in exactly one of assignments / unplaceable.
    assert set(plan.assignments) | set(plan.unplaceable) == {t.id for t in new}
    assert not set(plan.assignments) & set(plan.unplaceable)

    by_id = {n.id: n for n in nodes}
    added: dict[str, int] = {}
    for node_id in plan.assignments.values():
        added[node_id] = added.get(node_id, 0) + 1
        n = by_id[node_id]
        assert n.ready and n.availability == "active"

    now_placed = [
        t.model_copy(update={"node_id": plan.assignments[t.id]}) for t in new if t.id in plan.assignments
    ]
    after = build(nodes, s, existing + now_placed)
    assert after == plan.snapshot
    reserves = s.resources.reservations
    for node_id, count in added.items():
        n, usage = by_id[node_id], after.usage_of(node_id)
        # No node is over-committed by the plan.
        if reserves.memory_bytes:
            assert usage.memory_bytes <= n.memory_bytes
        if reserves.nano_cpus:
            assert usage.nano_cpus <= n.nano_cpus
        # max_replicas_per_node is never exceeded on a node the plan adds to.
        limit = s.placement.max_replicas_per_node
        if limit:
            assert usage.service_tasks("web") <= limit
        if s.ports:
            assert count == 1 and before.usage_of(node_id).service_tasks("web") == 0
    if plan.unplaceable:
        assert all(r.startswith("no suitable node (") for r in plan.unplaceable.values())
    # A fixed seed gives the same plan.
    assert schedule(before, s, list(reversed(new)), seed) == plan


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 12), st.integers(0, 60), st.integers(0, 2**32), st.sampled_from([0, 1, 2]))
def test_spread_keeps_equal_nodes_within_one(n_nodes: int, n_tasks: int, seed: int, n_other: int) -> None:
    nodes = [node(f"n{i}", cpus=64, memory_gb=64) for i in range(n_nodes)]
    # Tasks of another service on some nodes break ties but must not unbalance this service.
    others = [t for i in range(0, n_nodes, 2) for t in placed(tasks(n_other, "db", start=i * 10), f"n{i}")]
    plan = schedule(snapshot(nodes, others), spec(cpus=0.5, memory_gb=0.5), tasks(n_tasks), seed)
    counts = [sum(1 for v in plan.assignments.values() if v == n.id) for n in nodes]
    assert plan.unplaceable == {}
    assert max(counts) - min(counts) <= 1


def test_units_are_sane() -> None:
    assert node("x").nano_cpus == 4 * CPU and node("x").memory_bytes == 8 * GB
