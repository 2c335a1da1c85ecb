"""Micro-benchmark sanity: 10,000 tasks on 1,000 nodes. Prints the time; asserts only the result.

Run with `-s` to see the timings; no timed assertion, since CI machines vary.
"""

from __future__ import annotations

import time

import pytest

from controller.api.types import ServiceSpec
from controller.scheduler import schedule
from tests.unit.test_scheduler_fixtures import node, per_node, placed, snapshot, spec, tasks


@pytest.mark.parametrize(
    ("label", "s", "nodes_labelled"),
    [
        ("spread", spec(cpus=0.1, memory_gb=0.1), False),
        ("binpack", spec(cpus=0.1, memory_gb=0.1, scheduling="binpack"), False),
        ("spread+preference", spec(preferences=["spread=node.labels.rack"], max_per_node=20), True),
    ],
)
def test_ten_thousand_tasks_on_a_thousand_nodes(label: str, s: ServiceSpec, nodes_labelled: bool) -> None:
    nodes = [node(f"n{i:04}", labels={"rack": f"r{i % 40}"} if nodes_labelled else {}) for i in range(1000)]
    existing = [t for i in range(0, 1000, 3) for t in placed(tasks(2, "db", start=i * 2), f"n{i:04}")]
    started = time.perf_counter()
    snap = snapshot(nodes, existing, spec("db"))
    built = time.perf_counter()
    plan = schedule(snap, s, tasks(10_000), seed=1)
    done = time.perf_counter()
    print(f"\n{label}: snapshot {built - started:.3f}s, schedule 10k on 1k {done - built:.3f}s")
    assert len(plan.assignments) == 10_000
    if label != "binpack":
        assert set(per_node(plan).values()) == {10}
