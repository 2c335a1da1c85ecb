"""In-memory Store with etcd's semantics, for unit tests and the contract suite.

One lock guards everything; a Condition on it wakes watches. Leases expire by the
injected clock, checked lazily on every call (and by waiting watches), so a manual
clock plus advance() makes TTL behaviour deterministic.
"""

from __future__ import annotations

import bisect
import builtins
import itertools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TypeVar

from agent.errors import InvalidArgument, NotFound
from controller.store.base import (
    Compacted,
    Compare,
    Delete,
    Event,
    Get,
    KeyValue,
    Lease,
    Op,
    OpResult,
    Put,
    TxnResult,
)

# A waiting watch re-checks lease expiry this often (seconds), so TTLs run out on a real clock.
_MAX_WAIT = 0.05


@dataclass
class _Lease:
    ttl: int
    deadline: float
    keys: set[str] = field(default_factory=set)


class MemoryStore:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._offset = 0.0  # added by advance(), so a real clock can be pushed forward too
        self._cond = threading.Condition(threading.RLock())
        self._revision = 1  # etcd starts at 1: revision 1 is the empty store
        self._compacted = 0
        self._kvs: dict[str, KeyValue] = {}
        self._history: builtins.list[Event] = []
        self._leases: dict[int, _Lease] = {}
        self._lease_ids = itertools.count(0x5EED0001)
        self._closed = False

    # -- clock ---------------------------------------------------------------------------

    def now(self) -> float:
        return self._clock() + self._offset

    def advance(self, seconds: float) -> None:
        """Move this store's time forward (tests), expiring leases that run out."""
        with self._cond:
            self._offset += seconds
            self._expire()
            self._cond.notify_all()

    def _expire(self) -> None:
        now = self.now()
        for lease_id in [i for i, le in self._leases.items() if le.deadline <= now]:
            self._drop_lease(lease_id)

    def _drop_lease(self, lease_id: int) -> None:
        lease = self._leases.pop(lease_id)
        # Like etcd: all keys of a lease go in one write, at one revision.
        self._write([Delete(k) for k in sorted(lease.keys)])

    # -- reads ---------------------------------------------------------------------------

    def get(self, key: str) -> KeyValue | None:
        with self._cond:
            self._expire()
            return self._kvs.get(key)

    def list(self, prefix: str) -> tuple[builtins.list[KeyValue], int]:
        with self._cond:
            self._expire()
            kvs = [kv for k, kv in sorted(self._kvs.items()) if k.startswith(prefix)]
            return kvs, self._revision

    # -- writes --------------------------------------------------------------------------

    def put(self, key: str, value: bytes, lease: int | None = None) -> int:
        return self.txn([], [Put(key, value, lease)]).revision

    def delete(self, key: str) -> bool:
        return self.txn([], [Delete(key)]).responses[0] is True

    def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        for ops in (success, failure):
            _check_no_duplicate_writes(ops)
        with self._cond:
            self._expire()
            ok = all(self._holds(c) for c in compares)
            ops = success if ok else failure
            for op in ops:
                if isinstance(op, Put) and op.lease and op.lease not in self._leases:
                    raise NotFound(f"lease {op.lease:x} not found (expired or revoked)")
            responses = self._write(ops)
            return TxnResult(ok, self._revision, responses)

    def _holds(self, c: Compare) -> bool:
        kv = self._kvs.get(c.key)
        if c.target == "value":
            if not isinstance(c.operand, bytes):
                raise InvalidArgument(f"invalid compare operand {c.operand!r}: value needs bytes")
            # etcd: a value compare on an absent key is false, whatever the operator
            return kv is not None and _compare(kv.value, c.op, c.operand)
        if not isinstance(c.operand, int):
            raise InvalidArgument(f"invalid compare operand {c.operand!r}: {c.target} needs an int")
        if kv is None:
            return _compare(0, c.op, c.operand)  # etcd: an absent key's revisions and version are 0
        actual = {
            "mod_revision": kv.mod_revision,
            "create_revision": kv.create_revision,
            "version": kv.version,
        }
        return _compare(actual[c.target], c.op, c.operand)

    def _write(self, ops: Sequence[Op]) -> tuple[OpResult, ...]:
        """Apply ops at one new revision; the revision only moves if something changed."""
        rev = self._revision + 1
        changed = False
        results: builtins.list[OpResult] = []
        for op in ops:
            prev = self._kvs.get(op.key)
            if isinstance(op, Get):
                results.append(prev)
            elif isinstance(op, Put):
                lease = op.lease or 0
                kv = KeyValue(
                    op.key,
                    op.value,
                    create_revision=prev.create_revision if prev else rev,
                    mod_revision=rev,
                    version=prev.version + 1 if prev else 1,
                    lease=lease,
                )
                self._detach(prev)
                if lease:
                    self._leases[lease].keys.add(op.key)
                self._kvs[op.key] = kv
                self._history.append(Event("put", kv, prev))
                changed = True
                results.append(None)
            else:
                results.append(prev is not None)
                if prev is not None:
                    self._detach(prev)
                    del self._kvs[op.key]
                    tomb = KeyValue(op.key, b"", 0, rev, 0, 0)
                    self._history.append(Event("delete", tomb, prev))
                    changed = True
        if changed:
            self._revision = rev
            self._cond.notify_all()
        return tuple(results)

    def _detach(self, kv: KeyValue | None) -> None:
        if kv is not None and kv.lease in self._leases:
            self._leases[kv.lease].keys.discard(kv.key)

    # -- leases --------------------------------------------------------------------------

    def grant_lease(self, ttl: int) -> Lease:
        ttl = max(ttl, 1)  # etcd raises a too-small TTL to its minimum too
        with self._cond:
            self._expire()
            lease_id = next(self._lease_ids)
            self._leases[lease_id] = _Lease(ttl, self.now() + ttl)
            return Lease(lease_id, ttl)

    def keepalive(self, lease_id: int) -> int:
        with self._cond:
            self._expire()
            lease = self._lease(lease_id)
            lease.deadline = self.now() + lease.ttl
            return lease.ttl

    def keepalive_many(self, lease_ids: Sequence[int]) -> dict[int, int]:
        with self._cond:
            self._expire()
            out = {}
            for lease_id in lease_ids:
                lease = self._leases.get(lease_id)
                if lease is not None:
                    lease.deadline = self.now() + lease.ttl
                out[lease_id] = lease.ttl if lease is not None else 0
            return out

    def revoke(self, lease_id: int) -> None:
        with self._cond:
            self._expire()
            self._lease(lease_id)
            self._drop_lease(lease_id)

    def _lease(self, lease_id: int) -> _Lease:
        lease = self._leases.get(lease_id)
        if lease is None:
            raise NotFound(f"lease {lease_id:x} not found (expired or revoked)")
        return lease

    # -- watches and history -------------------------------------------------------------

    def watch_prefix(self, prefix: str, start_revision: int) -> MemoryWatch:
        with self._cond:
            return MemoryWatch(self, prefix, start_revision or self._revision + 1)

    def compact(self, revision: int) -> None:
        with self._cond:
            if revision > self._revision:
                raise InvalidArgument(f"invalid compact revision {revision}: future (now {self._revision})")
            if revision <= self._compacted:
                raise Compacted(self._compacted)
            self._compacted = revision
            self._history = [e for e in self._history if e.kv.mod_revision >= revision]
            self._cond.notify_all()  # watches behind the compaction now fail

    def _next_batch(self, watch: MemoryWatch, timeout: float | None) -> builtins.list[Event] | None:
        """Events for watch from its cursor; waits up to timeout; None if it was closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not (watch.closed or self._closed):
                self._expire()
                if watch.cursor < self._compacted:
                    raise Compacted(self._compacted)
                if watch.cursor <= self._revision:
                    start = bisect.bisect_left(self._history, watch.cursor, key=lambda e: e.kv.mod_revision)
                    batch = [e for e in self._history[start:] if e.kv.key.startswith(watch.prefix)]
                    watch.cursor = self._revision + 1
                    if batch:
                        return batch
                wait = _MAX_WAIT
                if deadline is not None:
                    wait = min(wait, deadline - time.monotonic())
                    if wait <= 0:
                        return []
                self._cond.wait(wait)
            return None

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class MemoryWatch:
    def __init__(self, store: MemoryStore, prefix: str, cursor: int) -> None:
        self._store = store
        self.prefix = prefix
        self.cursor = cursor  # the next revision to deliver
        self.closed = False

    def __iter__(self) -> Iterator[builtins.list[Event]]:
        return self

    def __next__(self) -> builtins.list[Event]:
        batch = self._store._next_batch(self, None)
        if batch is None:
            raise StopIteration
        return batch

    def poll(self, timeout: float = 0.0) -> builtins.list[Event]:
        """The fake only: pending events without blocking for long (single-threaded tests)."""
        return self._store._next_batch(self, timeout) or []

    def close(self) -> None:
        self.closed = True
        self._store._wake()

    def __enter__(self) -> MemoryWatch:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


_T = TypeVar("_T", int, bytes)


def _compare(actual: _T, op: str, expected: _T) -> bool:
    if op == "==":
        return actual == expected
    if op == "!=":
        return actual != expected
    if op == "<":
        return actual < expected
    return actual > expected


def _check_no_duplicate_writes(ops: Sequence[Op]) -> None:
    seen: set[str] = set()
    for op in ops:
        if isinstance(op, Get):
            continue
        if op.key in seen:
            raise InvalidArgument(f"invalid txn key {op.key!r}: written twice in one transaction")
        seen.add(op.key)
