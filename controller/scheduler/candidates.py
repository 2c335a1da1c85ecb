"""The feasible nodes of one plan, ordered so the next placement costs O(levels * log nodes).

A leaf is a heap of nodes by (strategy key, seeded rank). With placement preferences, each
level is a heap of label groups by (tasks of the service in the group, group rank), so the
group with the fewest tasks is tried first, as in swarmkit's decision tree. Placing a task
changes only the chosen node and the groups above it, so only those are re-pushed; a node that
can take no more is dropped, and a group with no nodes left is dropped.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from controller.scheduler.scorers import NodeKey

Commit = Callable[[str], NodeKey | None]
"""Places one task on the node; returns the node's new key, or None if it is now infeasible."""


@dataclass(frozen=True, slots=True)
class Candidate:
    node_id: str
    path: tuple[str | None, ...]
    """The node's group at each preference level."""
    key: NodeKey
    rank: int
    """Seeded tie-break; unique per node."""
    service_tasks: int


class Leaf:
    __slots__ = ("heap",)

    def __init__(self, candidates: Sequence[Candidate]) -> None:
        self.heap = [(c.key, c.rank, c.node_id) for c in candidates]
        heapq.heapify(self.heap)

    def take(self, commit: Commit) -> str | None:
        if not self.heap:
            return None
        _, rank, node_id = heapq.heappop(self.heap)
        key = commit(node_id)
        if key is not None:
            heapq.heappush(self.heap, (key, rank, node_id))
        return node_id


class Branch:
    __slots__ = ("heap",)

    def __init__(self, candidates: Sequence[Candidate], level: int) -> None:
        groups: dict[str | None, list[Candidate]] = {}
        for candidate in candidates:
            groups.setdefault(candidate.path[level], []).append(candidate)
        # (tasks of the service in the group, lowest rank in it, subtree); ranks are unique,
        # so subtrees are never compared.
        self.heap: list[tuple[int, int, Tree]] = [
            (sum(c.service_tasks for c in members), min(c.rank for c in members), build(members, level + 1))
            for members in groups.values()
        ]
        heapq.heapify(self.heap)

    def take(self, commit: Commit) -> str | None:
        while self.heap:
            count, rank, subtree = self.heap[0]
            node_id = subtree.take(commit)
            if node_id is None:
                heapq.heappop(self.heap)
                continue
            heapq.heapreplace(self.heap, (count + 1, rank, subtree))
            return node_id
        return None


Tree = Leaf | Branch


def build(candidates: Sequence[Candidate], level: int = 0) -> Tree:
    depth = len(candidates[0].path) if candidates else 0
    return Branch(candidates, level) if level < depth else Leaf(candidates)
