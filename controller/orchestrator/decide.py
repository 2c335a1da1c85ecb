"""One service's pass, pure: reconcile, then place what waits for a node.

Inputs are copies taken from the cache; the output is the reconcile plan, the placements, and
the snapshot with those placements charged, so the next service in the same round never
double-books a node.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from controller.api.types import NodeInfo, Service, ServiceSpec, Task
from controller.reconcile import Plan as ReconcilePlan
from controller.reconcile import ReconcileSettings, reconcile
from controller.scheduler import ClusterSnapshot, Demand, place_global, schedule
from controller.scheduler.constraints import parse_constraints

from .commit import Placement
from .state import WAITING, TaskRecord

CONSTRAINT_REASON = "constraint "
"""How the scheduler's constraint filter starts its reason."""


@dataclass(frozen=True)
class ServiceInputs:
    name: str
    service: Service | None
    records: Mapping[str, TaskRecord]
    """The service's stored tasks by id."""
    views: Sequence[Task]
    """The same tasks merged with their statuses (`observed()`)."""
    nodes: Sequence[NodeInfo]
    """Every node, `ready` derived from liveness."""
    down_since: Mapping[str, float]
    up_at: Mapping[str, float] = field(default_factory=dict)
    """When the service's tasks were first seen up / failing (ClusterState's, for rolling updates)."""
    stumbled_at: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    plan: ReconcilePlan
    placement: Placement
    snapshot: ClusterSnapshot | None
    """With this pass's placements charged; None when nothing was placed (the snapshot is unchanged)."""


def build_snapshot(
    nodes: Sequence[NodeInfo], views: Sequence[Task], services: Sequence[Service]
) -> ClusterSnapshot:
    """Tasks still waiting hold nothing: a pending global task must not count against its own node."""
    holding = [t for t in views if t.state not in WAITING]
    return ClusterSnapshot.build(nodes, holding, {s.id: s.spec for s in services})


def decide(
    inputs: ServiceInputs,
    snapshot: Callable[[], ClusterSnapshot],
    now: float,
    settings: ReconcileSettings,
    new_id: Callable[[], str],
    seed: int,
) -> Decision:
    """`snapshot` is called only when something needs placing: building one walks every task, and
    most passes (a status changed) place nothing. Raises InvalidArgument if the stored spec's
    placement does not parse."""
    service = inputs.service
    nodes = inputs.nodes
    if service is not None and service.spec.mode == "global":
        # A node that stops matching then looks gone: its task is dropped (and its agent removes
        # the container when the assignment goes).
        constraints = parse_constraints(service.spec.placement.constraints)
        nodes = [n for n in nodes if all(c.matches(n) for c in constraints)]
    plan = reconcile(
        service,
        inputs.views,
        nodes,
        now,
        settings,
        new_id=new_id,
        down_since=inputs.down_since,
        up_at=inputs.up_at,
        stumbled_at=inputs.stumbled_at,
    )
    if service is None:
        return Decision(plan, Placement(), None)
    leaving = {*plan.shutdown, *plan.remove}
    waiting = [
        t
        for t in inputs.views
        if t.state in WAITING
        and t.desired_state == "running"
        and t.id not in leaving
        and t.service_id == service.id
        and t.spec_version == service.task_version  # an older one waits for its update instead
    ]
    if service.spec.mode == "global":
        return _place_global(plan, service.spec, [*plan.create, *(t for t in waiting if t.node_id)], snapshot)
    todo = [*plan.create, *(t for t in waiting if not t.node_id)]
    if not todo:
        return Decision(plan, Placement(), None)
    placed = schedule(snapshot(), service.spec, todo, seed)
    return Decision(plan, Placement(placed.assignments, placed.unplaceable), placed.snapshot)


def _place_global(
    plan: ReconcilePlan, spec: ServiceSpec, todo: Sequence[Task], get_snapshot: Callable[[], ClusterSnapshot]
) -> Decision:
    if not todo:
        return Decision(plan, Placement(), None)
    snapshot = get_snapshot()
    new = {t.id for t in plan.create}
    judged = place_global(snapshot, spec, {t.node_id for t in todo})
    eligible = set(judged.eligible)
    assigned: dict[str, str] = {}
    pending: dict[str, str] = {}
    skipped: set[str] = set()
    for task in todo:
        if task.node_id in eligible:
            assigned[task.id] = task.node_id
            continue
        reason = judged.ineligible[task.node_id]
        if reason.startswith(CONSTRAINT_REASON) and task.id in new:
            skipped.add(task.id)
        else:
            pending[task.id] = reason
    demand = Demand.of(spec)
    charged = {n: snapshot.usage_of(n).plus(demand) for n in set(assigned.values())}
    return Decision(plan, Placement(assigned, pending, frozenset(skipped)), snapshot.with_usage(charged))
