"""`schedule`, `place_global` and the Swarm-style reasons, on small hand-built clusters."""

from __future__ import annotations

import pytest

from agent.errors import InvalidArgument
from controller.scheduler import no_suitable_node, place_global, schedule
from tests.unit.test_scheduler_fixtures import GB, node, per_node, placed, snapshot, spec, tasks

THREE = [node("a"), node("b"), node("c")]


@pytest.mark.parametrize(("replicas", "each"), [(6, 2), (9, 3)])
def test_spread_evens_out_within_one_plan(replicas: int, each: int) -> None:
    plan = schedule(snapshot(THREE), spec(), tasks(replicas), seed=1)
    assert per_node(plan) == {"a": each, "b": each, "c": each}
    assert plan.unplaceable == {}


def test_spread_fills_the_emptiest_nodes_first_counting_existing_tasks() -> None:
    web = spec()
    existing = placed(tasks(3, start=100), "a") + placed(tasks(1, "db"), "b")
    plan = schedule(snapshot(THREE, existing, web), web, tasks(3), seed=7)
    # c has nothing, b has a db task only, a has 3 web tasks: c and b first, then whichever is least.
    assert per_node(plan) == {"c": 2, "b": 1}


def test_binpack_fills_one_node_first() -> None:
    s = spec(memory_gb=3, scheduling="binpack")
    plan = schedule(snapshot(THREE), s, tasks(4), seed=3)
    counts = sorted(per_node(plan).values(), reverse=True)
    assert counts == [2, 2]  # 8 GB nodes take two 3 GB tasks each
    seeded_first = schedule(snapshot(THREE), s, tasks(2), seed=3)
    assert len(set(seeded_first.assignments.values())) == 1


def test_binpack_prefers_the_fuller_node() -> None:
    s = spec(memory_gb=1, scheduling="binpack")
    existing = placed(tasks(4, "db"), "b")
    plan = schedule(snapshot(THREE, existing, spec("db", memory_gb=1)), s, tasks(4), seed=0)
    assert per_node(plan) == {"b": 4}


def test_preferences_spread_over_label_groups_and_unlabelled_nodes_form_a_group() -> None:
    nodes = [
        node("eu1", labels={"zone": "eu"}),
        node("eu2", labels={"zone": "eu"}),
        node("eu3", labels={"zone": "eu"}),
        node("us1", labels={"zone": "us"}),
        node("bare"),
    ]
    plan = schedule(snapshot(nodes), spec(preferences=["spread=node.labels.zone"]), tasks(6), seed=5)
    counts = per_node(plan)
    assert counts["us1"] == 2 and counts["bare"] == 2
    assert counts.get("eu1", 0) + counts.get("eu2", 0) + counts.get("eu3", 0) == 2
    assert max(counts.get(n, 0) for n in ("eu1", "eu2", "eu3")) == 1


def test_nested_preferences() -> None:
    nodes = [
        node(f"{zone}-{rack}-{i}", labels={"zone": zone, "rack": rack})
        for zone in ("eu", "us")
        for rack in ("r1", "r2")
        for i in range(2)
    ]
    s = spec(preferences=["spread=node.labels.zone", "spread=node.labels.rack"])
    plan = schedule(snapshot(nodes), s, tasks(8), seed=9)
    assert per_node(plan) == {n.id: 1 for n in nodes}
    plan4 = schedule(snapshot(nodes), s, tasks(4), seed=9)
    racks = {node_id.rsplit("-", 1)[0] for node_id in plan4.assignments.values()}
    assert racks == {"eu-r1", "eu-r2", "us-r1", "us-r2"}


def test_max_replicas_per_node_caps_and_reports() -> None:
    plan = schedule(snapshot(THREE), spec(max_per_node=2), tasks(8), seed=2)
    assert per_node(plan) == {"a": 2, "b": 2, "c": 2}
    assert set(plan.unplaceable) == {"web.7", "web.8"}
    assert plan.unplaceable["web.7"] == "no suitable node (max replicas per node (2) reached on 3 nodes)"


def test_host_port_conflicts_within_one_plan() -> None:
    plan = schedule(snapshot(THREE), spec(ports=[8080]), tasks(4), seed=4)
    assert per_node(plan) == {"a": 1, "b": 1, "c": 1}
    assert plan.unplaceable == {"web.4": "no suitable node (host port 8080/tcp in use on 3 nodes)"}


def test_host_port_taken_by_another_service() -> None:
    other = spec("proxy", ports=[8080])
    snap = snapshot(THREE, placed(tasks(1, "proxy"), "b"), other)
    plan = schedule(snap, spec(ports=[8080]), tasks(2), seed=4)
    assert set(plan.assignments.values()) == {"a", "c"}


def test_reservation_larger_than_any_node() -> None:
    plan = schedule(snapshot(THREE), spec(memory_gb=64), tasks(2), seed=0)
    assert plan.assignments == {}
    assert plan.unplaceable == {
        "web.1": "no suitable node (insufficient memory on 3 nodes)",
        "web.2": "no suitable node (insufficient memory on 3 nodes)",
    }


def test_mixed_reasons_sorted_by_count_then_text() -> None:
    nodes = [
        node("a", memory_gb=2, labels={"disk": "ssd"}),
        node("b", memory_gb=2, labels={"disk": "ssd"}),
        node("c", memory_gb=64),
        node("d", labels={"disk": "ssd"}, availability="drain"),
        node("e", labels={"disk": "ssd"}, ready=False),
    ]
    plan = schedule(snapshot(nodes), spec(memory_gb=4, constraints=["node.labels.disk==ssd"]), tasks(1), 0)
    assert plan.unplaceable == {
        "web.1": "no suitable node (insufficient memory on 2 nodes; "
        "constraint node.labels.disk==ssd not satisfied on 1 node; "
        "node availability is drain on 1 node; node not ready on 1 node)"
    }


def test_reservations_accumulate_within_one_plan() -> None:
    nodes = [node("a", memory_gb=4), node("b", memory_gb=2)]
    plan = schedule(snapshot(nodes), spec(memory_gb=1.5), tasks(5), seed=0)
    assert per_node(plan) == {"a": 2, "b": 1}
    assert len(plan.unplaceable) == 2
    assert plan.snapshot.usage_of("a").memory_bytes == 3 * GB
    assert "insufficient memory on 2 nodes" in plan.unplaceable["web.4"]


def test_drained_and_paused_nodes_are_never_chosen() -> None:
    nodes = [
        node("a", availability="drain"),
        node("b", availability="pause"),
        node("c"),
        node("d", ready=False),
    ]
    plan = schedule(snapshot(nodes), spec(), tasks(10), seed=11)
    assert per_node(plan) == {"c": 10}


def test_no_nodes() -> None:
    plan = schedule(snapshot([]), spec(), tasks(1), seed=0)
    assert plan.unplaceable == {"web.1": "no suitable node (no nodes in the cluster)"}


def test_determinism_for_a_seed_and_input_order() -> None:
    nodes = [node(f"n{i}") for i in range(20)]
    work = tasks(7)
    first = schedule(snapshot(nodes), spec(), work, seed=42)
    again = schedule(snapshot(list(reversed(nodes))), spec(), list(reversed(work)), seed=42)
    assert first.assignments == again.assignments
    others = {
        tuple(sorted(schedule(snapshot(nodes), spec(), work, seed=s).assignments.values())) for s in range(10)
    }
    assert len(others) > 1  # ties really are broken by the seed


def test_plan_snapshot_chains_into_the_next_service() -> None:
    first = schedule(snapshot(THREE), spec("web", ports=[80]), tasks(3), seed=1)
    second = schedule(first.snapshot, spec("api", ports=[80]), tasks(1, "api"), seed=1)
    assert second.unplaceable == {"api.1": "no suitable node (host port 80/tcp in use on 3 nodes)"}


def test_bad_spec_raises_before_planning() -> None:
    with pytest.raises(InvalidArgument):
        schedule(snapshot(THREE), spec(constraints=["node.role==manager"]), tasks(1), seed=0)


def test_place_global() -> None:
    nodes = [*THREE, node("d", availability="pause"), node("e", labels={"gpu": "yes"})]
    result = place_global(snapshot(nodes), spec(constraints=["node.labels.gpu!=yes"]))
    assert result.eligible == ("a", "b", "c")
    assert result.ineligible == {
        "d": "node availability is pause",
        "e": "constraint node.labels.gpu!=yes not satisfied",
    }
    only = place_global(snapshot(nodes), spec(), ["b", "zz"])
    assert only.eligible == ("b",)
    assert only.ineligible == {"zz": "unknown node"}


def test_no_suitable_node_wording() -> None:
    assert no_suitable_node(["x", "y", "y", None]) == "no suitable node (y on 2 nodes; x on 1 node)"
