"""Writing a node's task statuses to the store, each guarded on its assignment still existing.

The guard (ARCHITECTURE: Compare(assignment_key, "create_revision", ">", 0)) keeps an agent from
resurrecting status/<node>/<task> after the leader deleted the task with its assignment and status.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from controller.api import keyspace
from controller.api.types import TaskStatus
from controller.store.base import Compare, Put, Store

BATCH = 50
"""Statuses per transaction: 2 x 50 compares/ops stays below etcd's default --max-txn-ops of 128."""


class StatusWriter(Protocol):
    def write(self, node_id: str, statuses: Sequence[TaskStatus]) -> set[str]:
        """Write what can be written; returns the task ids written. A status whose assignment is
        gone is dropped (not an error). Store errors (Unavailable) propagate: the caller retries."""
        ...


def _guard(node_id: str, task_id: str) -> Compare:
    return Compare(keyspace.assignment_key(node_id, task_id), "create_revision", ">", 0)


def _put(node_id: str, status: TaskStatus) -> Put:
    return Put(keyspace.status_key(node_id, status.task_id), keyspace.encode(status))


class SingleStatusWriter:
    """One transaction per status: what a real agent does (it has few tasks)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def write(self, node_id: str, statuses: Sequence[TaskStatus]) -> set[str]:
        written = set()
        for s in statuses:
            if self._store.txn([_guard(node_id, s.task_id)], [_put(node_id, s)]).succeeded:
                written.add(s.task_id)
        return written


class BatchedStatusWriter:
    """Up to BATCH statuses per transaction; when a batch's guard fails (some assignment is
    gone), that batch is written one by one so the others still land."""

    def __init__(self, store: Store, batch: int = BATCH) -> None:
        self._store = store
        self._batch = batch
        self._single = SingleStatusWriter(store)

    def write(self, node_id: str, statuses: Sequence[TaskStatus]) -> set[str]:
        written: set[str] = set()
        for i in range(0, len(statuses), self._batch):
            chunk = statuses[i : i + self._batch]
            if len(chunk) == 1:
                written |= self._single.write(node_id, chunk)
                continue
            compares = [_guard(node_id, s.task_id) for s in chunk]
            if self._store.txn(compares, [_put(node_id, s) for s in chunk]).succeeded:
                written |= {s.task_id for s in chunk}
            else:
                written |= self._single.write(node_id, chunk)
        return written
