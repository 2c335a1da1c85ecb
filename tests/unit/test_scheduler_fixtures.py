"""Builders shared by the scheduler tests (no tests here)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from controller.api.types import (
    Availability,
    NodeInfo,
    Placement,
    PortSpec,
    ResourceAmounts,
    Resources,
    ServiceSpec,
    Task,
)
from controller.scheduler import ClusterSnapshot, Plan

GB = 1 << 30
CPU = 1_000_000_000


def node(
    node_id: str,
    *,
    cpus: int = 4,
    memory_gb: int = 8,
    labels: Mapping[str, str] | None = None,
    availability: Availability = "active",
    ready: bool = True,
) -> NodeInfo:
    return NodeInfo(
        id=node_id,
        hostname=f"host-{node_id}",
        address="10.0.0.1",
        nano_cpus=cpus * CPU,
        memory_bytes=memory_gb * GB,
        labels=dict(labels or {}),
        availability=availability,
        ready=ready,
    )


def spec(
    name: str = "web",
    *,
    cpus: float = 0,
    memory_gb: float = 0,
    constraints: Iterable[str] = (),
    preferences: Iterable[str] = (),
    max_per_node: int = 0,
    ports: Iterable[int] = (),
    scheduling: str = "spread",
) -> ServiceSpec:
    return ServiceSpec.model_validate(
        {
            "name": name,
            "image": "nginx",
            "resources": Resources(
                reservations=ResourceAmounts(nano_cpus=int(cpus * CPU), memory_bytes=int(memory_gb * GB))
            ),
            "placement": Placement(
                constraints=list(constraints),
                preferences=list(preferences),
                max_replicas_per_node=max_per_node,
            ),
            "ports": [PortSpec(target=p, published=p) for p in ports],
            "scheduling": scheduling,
        }
    )


def tasks(n: int, service: str = "web", *, start: int = 1) -> list[Task]:
    return [
        Task(
            id=f"{service}.{slot}",
            service_id=f"id-{service}",
            service_name=service,
            spec_version=1,
            slot=slot,
        )
        for slot in range(start, start + n)
    ]


def placed(task_list: list[Task], node_id: str, state: str = "running") -> list[Task]:
    return [t.model_copy(update={"node_id": node_id, "state": state}) for t in task_list]


def snapshot(
    nodes: Iterable[NodeInfo], existing: Iterable[Task] = (), *specs: ServiceSpec
) -> ClusterSnapshot:
    return ClusterSnapshot.build(nodes, existing, {f"id-{s.name}": s for s in specs})


def per_node(plan: Plan) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node_id in plan.assignments.values():
        counts[node_id] = counts.get(node_id, 0) + 1
    return counts
