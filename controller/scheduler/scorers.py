"""How feasible nodes are ranked: sort keys, smaller is better, compared lexicographically.

Keys are combined in a fixed order rather than summed as weighted scores (Nomad normalises
and sums): placement preferences choose the label group first, then the strategy key chooses
a node within it, then a seeded shuffle breaks ties. Lexicographic keys keep each rule's
meaning exact ("fewest tasks of the service" is never traded against "fewest tasks overall"),
and a key only changes on the node a task was just placed on, so the candidates can live in a heap.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable

from controller.api.types import NodeInfo
from controller.scheduler.constraints import Preference
from controller.scheduler.demand import Demand
from controller.scheduler.snapshot import NodeUsage

NodeKey = tuple[float, float]
Scorer = Callable[[NodeInfo, Demand, NodeUsage], NodeKey]


def spread_key(node: NodeInfo, demand: Demand, usage: NodeUsage) -> NodeKey:
    """Fewest tasks of this service, then fewest tasks overall (swarmkit's nodeLess)."""
    return (usage.service_tasks(demand.service), usage.tasks)


def used_fraction(node: NodeInfo, usage: NodeUsage) -> float:
    """Mean reserved fraction over the resources the node reports (0 when it reports none)."""
    fractions = [
        used / capacity
        for used, capacity in ((usage.nano_cpus, node.nano_cpus), (usage.memory_bytes, node.memory_bytes))
        if capacity > 0
    ]
    return sum(fractions) / len(fractions) if fractions else 0.0


def binpack_key(node: NodeInfo, demand: Demand, usage: NodeUsage) -> NodeKey:
    """Fullest node first; with no reservations, the node with most tasks, so one fills first."""
    return (-used_fraction(node, usage), -usage.tasks)


STRATEGIES: dict[str, Scorer] = {"spread": spread_key, "binpack": binpack_key}


def seeded_ranks(node_ids: Iterable[str], seed: int) -> dict[str, int]:
    """A tie-break rank per node: a shuffle of the sorted ids by a private PRNG, so a plan
    depends only on (snapshot, spec, tasks, seed) and ties do not always favour the same node."""
    order = sorted(node_ids)
    random.Random(seed).shuffle(order)
    return {node_id: rank for rank, node_id in enumerate(order)}


def preference_path(node: NodeInfo, preferences: tuple[Preference, ...]) -> tuple[str | None, ...]:
    """The node's group at each preference level; None is the group of nodes without the label."""
    return tuple(preference.group(node) for preference in preferences)
