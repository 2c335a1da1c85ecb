"""The leader's control loop: list + watch into a cache, reconcile and place dirty services in
rounds, commit fenced and guarded transactions.

Two threads. The watcher lists /shoal/v1/, then watches from the list's revision + 1, folding
events into the ClusterState and queueing the services they make dirty (compaction: list again,
everything dirty). The worker takes rounds from the queue. Every write is guarded on what it was
planned from, so the loop may be killed anywhere and restarted: it re-lists and converges.

A failed transaction means a stale read (wait for the cache to catch up, re-plan; at most
`max_attempts` times, then retry later) or, when LEADER is no longer our term, that we are not
the leader any more: then the orchestrator stops for good.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from typing import TypeVar

from agent.errors import ShoalError
from controller.api import keyspace
from controller.election import holds
from controller.reconcile import ReconcileSettings
from controller.scheduler import ClusterSnapshot
from controller.store.base import Compacted, Compare, Event, KeyValue, Store, Watch

from .commit import Txn, plan_writes
from .decide import ServiceInputs, build_snapshot, decide
from .observer import NullObserver, Observer, touched_tasks
from .queue import WorkQueue
from .state import ClusterState

log = logging.getLogger(__name__)

ROOT = keyspace.PREFIX + "/"
T = TypeVar("T")


class Deposed(Exception):
    """LEADER is no longer the term this orchestrator was started for."""


def new_task_id() -> str:
    return uuid.uuid4().hex[:20]


class Orchestrator:
    def __init__(
        self,
        store: Store,
        fence: Compare,
        settings: ReconcileSettings,
        clock: Callable[[], float] = time.time,
        *,
        new_id: Callable[[], str] = new_task_id,
        max_attempts: int = 5,
        retry_interval: float = 1.0,
        catch_up_timeout: float = 2.0,
        observer: Observer | None = None,
    ) -> None:
        """clock: wall time, the reconciler's `now` (task timestamps are ISO times from it)."""
        self._store = store
        self._fence = fence
        self._settings = settings
        self._clock = clock
        self._new_id = new_id
        self._max_attempts = max_attempts
        self._retry = retry_interval
        self._catch_up_timeout = catch_up_timeout
        self._observer = observer or NullObserver()
        self._observed = observer is not None
        """Without an observer (no metrics) the watch path does not diff task views for it."""
        self.state = ClusterState()
        self.queue = WorkQueue(clock)
        self._cond = threading.Condition()  # guards state; notified on every change of it
        self._stop = threading.Event()
        self._watch: Watch | None = None
        self._written = 0  # revision of our last successful write: the cache must reach it first
        self._loaded = False
        self.deposed = False
        self.commits = 0
        self.conflicts = 0
        self._threads: list[threading.Thread] = []

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        for target, name in ((self._watch_loop, "watch"), (self._work_loop, "work")):
            thread = threading.Thread(target=target, name=f"orchestrator-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._halt()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        return self._stop.wait(timeout)

    def read(self, reader: Callable[[ClusterState], T]) -> T:
        """`reader` applied to the cache under its lock (metrics read it at scrape time)."""
        with self._cond:
            return reader(self.state)

    def _depose(self, why: str) -> None:
        if not self.deposed:
            log.warning("orchestrator: no longer leader (%s); stopping", why)
        self.deposed = True
        self._halt()

    def _halt(self) -> None:
        """Make both threads return: callable from either of them, or from outside."""
        self._stop.set()
        self.queue.close()
        with self._cond:
            watch = self._watch
            self._cond.notify_all()
        if watch is not None:
            watch.close()

    # -- the watcher ---------------------------------------------------------------------

    def _watch_loop(self) -> None:
        while not self._stop.is_set():
            try:
                kvs, revision = self._store.list(ROOT)
                self._check_leader(next((kv for kv in kvs if kv.key == keyspace.LEADER), None))
                with self._cond:
                    dirty = self.state.load(kvs, revision, self._clock())
                    self._loaded = True
                    if self._stop.is_set():
                        return
                    watch = self._watch = self._store.watch_prefix(ROOT, revision + 1)
                    self._cond.notify_all()
                self.queue.add(dirty)
                for batch in watch:
                    self._fold(batch)
            except Deposed as err:
                self._depose(str(err))
            except Compacted as err:
                log.info("orchestrator: %s; listing again", err)
            except ShoalError as err:
                if not self._stop.is_set():
                    log.warning("orchestrator: watch failed: %s; listing again", err)
                    self._stop.wait(self._retry)
            except Exception:
                log.exception("orchestrator: unexpected watch failure; listing again")
                self._stop.wait(self._retry)

    def _fold(self, batch: list[Event]) -> None:
        for event in batch:
            if event.kv.key == keyspace.LEADER:
                self._check_leader(event.kv if event.type == "put" else None)
        touched = touched_tasks(batch) if self._observed else set()
        with self._cond:
            before = {i: self.state.views.get(i) for i in touched}
            dirty = self.state.apply(batch, self._clock())
            after = {i: self.state.views.get(i) for i in touched}
            self._cond.notify_all()
        if touched:
            self._observer.tasks_changed(before, after)
        self.queue.add(dirty)

    def _check_leader(self, kv: KeyValue | None) -> None:
        """Reads tell us early; the fence on every write is what makes it safe."""
        if not holds(kv, self._fence):
            raise Deposed("leader key is gone or belongs to another term")

    # -- the worker ----------------------------------------------------------------------

    def _work_loop(self) -> None:
        try:
            while not self._stop.is_set():
                names = self.queue.take_round()
                if names and self._catch_up(self._written, timeout=None):
                    self.run_round(names)
        except Deposed as err:
            self._depose(str(err))
        except Exception:  # a bug: better a loud stop (the election keeps running) than a wedge
            log.exception("orchestrator: unexpected failure; stopping")
            self._stop.set()

    def _catch_up(self, revision: int, timeout: float | None) -> bool:
        """Wait until the cache reflects `revision`; False if stopped (or timed out)."""
        with self._cond:
            return (
                self._cond.wait_for(
                    lambda: self._stop.is_set() or (self._loaded and self.state.revision >= revision), timeout
                )
                and not self._stop.is_set()
            )

    def run_round(self, names: set[str]) -> None:
        """One pass over `names`, sharing one cluster snapshot."""
        shared = RoundSnapshot(self._snapshot)
        for name in sorted(names):
            if self._stop.is_set():
                return
            started = time.monotonic()
            self._service_pass(name, shared)
            self._observer.service_passed(time.monotonic() - started)

    def _snapshot(self) -> ClusterSnapshot:
        with self._cond:
            state = self.state
            return build_snapshot(
                state.node_infos(), list(state.views.values()), [r.service for r in state.services.values()]
            )

    def _inputs(self, name: str) -> ServiceInputs:
        state = self.state
        records = {r.task.id: r for r in state.service_tasks(name)}
        record = state.services.get(name)
        return ServiceInputs(
            name=name,
            service=record.service if record else None,
            records=records,
            views=[state.views[i] for i in records],
            nodes=state.node_infos(),
            down_since=dict(state.down_since),
            up_at={i: state.up_at[i] for i in records if i in state.up_at},
            stumbled_at={i: state.stumbled_at[i] for i in records if i in state.stumbled_at},
        )

    def _service_pass(self, name: str, snapshot: RoundSnapshot) -> None:
        """Plan and commit one service, charging its placements to the round's snapshot."""
        for _ in range(self._max_attempts):
            with self._cond:
                inputs = self._inputs(name)
                service_record = self.state.services.get(name)
                assignments = _assignments_of(self.state.assignments, inputs)
                seed = zlib.crc32(f"{name}:{self.state.revision}".encode())
            now = self._clock()
            try:
                decision = decide(inputs, snapshot.get, now, self._settings, self._new_id, seed)
            except ShoalError as err:  # a stored spec the scheduler refuses: nothing to do until it changes
                log.error("orchestrator: service %s: %s", name, err)
                self._observer.decide_failed()
                return
            if decision.plan.requeue_at is not None:
                self.queue.add_after(name, decision.plan.requeue_at)
            txns = plan_writes(
                name,
                service_record,
                decision.plan,
                decision.placement,
                inputs.records,
                assignments,
                now,
                self._fence,
            )
            try:
                failed_at = self._commit(txns)
            except ShoalError as err:
                log.warning("orchestrator: service %s: commit failed: %s; retrying later", name, err)
                self.queue.add_after(name, now + self._retry)
                return
            if failed_at is None:
                self._observer.committed(decision, inputs.records, now)
                if decision.snapshot is not None:
                    snapshot.value = decision.snapshot
                return
            self.conflicts += 1
            log.info("orchestrator: service %s: stale read (store at %d); re-planning", name, failed_at)
            self._catch_up(failed_at, timeout=self._catch_up_timeout)
            snapshot.value = None  # rebuilt from the caught-up cache when next needed
        log.warning(
            "orchestrator: service %s: %d conflicts in a row; retrying later", name, self._max_attempts
        )
        self.queue.add_after(name, self._clock() + self._retry)

    def _commit(self, txns: list[Txn]) -> int | None:
        """Run the transactions in order; None if all succeeded, else the store revision at the
        failing one (earlier ones stay: each is correct on its own, and the re-plan sees them)."""
        for txn in txns:
            result = self._store.txn(txn.compares, txn.success, txn.failure)
            if not result.succeeded:
                leader = result.responses[0] if result.responses else None
                if not isinstance(leader, KeyValue) or not holds(leader, self._fence):
                    raise Deposed("a fenced write failed: the leader key is another term's")
                return result.revision
            self.commits += 1
            with self._cond:
                self._written = max(self._written, result.revision)
        return None


class RoundSnapshot:
    """A round's cluster snapshot, built on first use (most passes place nothing, and a build walks
    every task); each committed placement is charged to it so later services never double-book."""

    def __init__(self, build: Callable[[], ClusterSnapshot]) -> None:
        self._build = build
        self.value: ClusterSnapshot | None = None

    def get(self) -> ClusterSnapshot:
        if self.value is None:
            self.value = self._build()
        return self.value


def _assignments_of(assignments: dict[str, bytes], inputs: ServiceInputs) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for record in inputs.records.values():
        task = record.task
        if task.node_id:
            key = keyspace.assignment_key(task.node_id, task.id)
            if key in assignments:
                found[key] = assignments[key]
    return found
