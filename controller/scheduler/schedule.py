"""Plans: which node each task goes to, or why no node can take it.

`schedule` places a batch of tasks of one service one at a time, charging each placement to
the working usage so later tasks in the same plan see it (spread, reservations, ports and
max-replicas all account for earlier placements). Nothing is written: the controller commits
the plan with a compare on the revision its snapshot was read at, and re-plans on conflict.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from controller.api.types import NodeInfo, ServiceSpec, Task
from controller.scheduler.candidates import Candidate, build
from controller.scheduler.demand import Demand
from controller.scheduler.filters import all_failures, first_failure
from controller.scheduler.scorers import STRATEGIES, NodeKey, preference_path, seeded_ranks
from controller.scheduler.snapshot import ClusterSnapshot, NodeUsage


@dataclass(frozen=True)
class Plan:
    assignments: dict[str, str]
    """task id -> node id."""
    unplaceable: dict[str, str]
    """task id -> why no node could take it, in Swarm's words."""
    snapshot: ClusterSnapshot
    """The input snapshot plus the assignments, to plan another service against."""


@dataclass(frozen=True)
class GlobalPlan:
    eligible: tuple[str, ...]
    """Node ids that can run the global service's task, sorted."""
    ineligible: dict[str, str]
    """node id -> the first reason it cannot."""


def no_suitable_node(reasons: Iterable[str | None]) -> str:
    """Swarm's message: each distinct reason with how many nodes gave it, most common first."""
    counts = Counter(reason for reason in reasons if reason is not None)
    if not counts:
        return "no suitable node (no nodes in the cluster)"
    parts = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return "no suitable node ({})".format(
        "; ".join(f"{reason} on {n} node{'' if n == 1 else 's'}" for reason, n in parts)
    )


def schedule(snapshot: ClusterSnapshot, spec: ServiceSpec, tasks: Sequence[Task], seed: int) -> Plan:
    """Place `tasks` (all of `spec`'s service; their current node_id is ignored).

    Tasks are placed in (slot, id) order, so the plan does not depend on the order given.
    Raises `InvalidArgument` if the spec's placement does not parse.
    """
    demand = Demand.of(spec)
    score = STRATEGIES[demand.strategy]
    ranks = seeded_ranks(snapshot.nodes, seed)
    changed: dict[str, NodeUsage] = {}

    def usage_of(node_id: str) -> NodeUsage:
        return changed.get(node_id) or snapshot.usage_of(node_id)

    def commit(node_id: str) -> NodeKey | None:
        node = snapshot.nodes[node_id]
        usage = changed[node_id] = usage_of(node_id).plus(demand)
        # Only this node's usage changed and the spec is fixed, so no other node needs re-checking.
        if first_failure(node, demand, usage) is not None:
            return None
        return score(node, demand, usage)

    candidates = []
    for node_id, node in snapshot.nodes.items():
        usage = snapshot.usage_of(node_id)
        if first_failure(node, demand, usage) is None:
            candidates.append(
                Candidate(
                    node_id=node_id,
                    path=preference_path(node, demand.preferences),
                    key=score(node, demand, usage),
                    rank=ranks[node_id],
                    service_tasks=usage.service_tasks(demand.service),
                )
            )
    tree = build(candidates)

    ordered = sorted({task.id: task for task in tasks}.values(), key=lambda task: (task.slot, task.id))
    assignments: dict[str, str] = {}
    unplaceable: dict[str, str] = {}
    for index, task in enumerate(ordered):
        chosen = tree.take(commit)
        if chosen is None:
            # No feasible node is left and nothing changes any more: one reason for all the rest.
            reason = no_suitable_node(
                first_failure(node, demand, usage_of(node.id)) for node in snapshot.nodes.values()
            )
            unplaceable = {rest.id: reason for rest in ordered[index:]}
            break
        assignments[task.id] = chosen
    return Plan(assignments, unplaceable, snapshot.with_usage(changed))


def place_global(
    snapshot: ClusterSnapshot, spec: ServiceSpec, nodes: Iterable[str] | None = None
) -> GlobalPlan:
    """Which of `nodes` (ids; default all) can run a task of the global service `spec`.

    Each node is judged alone, since a global service puts one task on each: pass the nodes that
    still lack a task, so a node's own task does not count against it (ports, max replicas)."""
    demand = Demand.of(spec)
    eligible: list[str] = []
    ineligible: dict[str, str] = {}
    for node_id in sorted(snapshot.nodes if nodes is None else set(nodes)):
        node = snapshot.nodes.get(node_id)
        reason = "unknown node" if node is None else first_failure(node, demand, snapshot.usage_of(node_id))
        if reason is None:
            eligible.append(node_id)
        else:
            ineligible[node_id] = reason
    return GlobalPlan(tuple(eligible), ineligible)


def explain(node: NodeInfo, spec: ServiceSpec, snapshot: ClusterSnapshot) -> list[str]:
    """Every reason `node` cannot take another task of `spec`; empty if it can."""
    return all_failures(node, Demand.of(spec), snapshot.usage_of(node.id))
