"""The task worker: makes this node's containers match its assignments and reports what they do.

Level-triggered (STYLE 2, 11): inputs only record what changed and wake one worker thread, which
re-plans the whole node with `plan.plan_node` and applies the plan. Inputs are the assignments
(a snapshot, then watch events: from the worker's own `AssignmentWatch`, or fed by a hollow fleet
demultiplexing one shared watch), runtime callbacks, and a periodic resync as a safety net.
Killed at any line and restarted, it re-lists, adopts the containers that still run and reports
only what changed. Store outages are retried with backoff; runtime failures to start a task become
"rejected" statuses; nothing here ends the agent.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from agent.errors import ShoalError
from agent.tasks.plan import Actions, plan_node
from agent.tasks.runtime import TaskRuntime
from agent.tasks.status import StatusWriter
from controller.api import keyspace
from controller.api.types import Assignment, TaskStatus
from controller.store.base import Compacted, Event, KeyValue, Store, Watch

log = logging.getLogger(__name__)

MAX_PASSES = 8
"""Plan/apply rounds per sync before waiting for the next input (a stuck container must not spin)."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class Backoff:
    def __init__(self, initial: float = 0.1, cap: float = 5.0) -> None:
        self.initial, self.cap = initial, cap
        self.delay = 0.0

    def next(self) -> float:
        self.delay = self.initial if self.delay == 0 else min(self.delay * 2, self.cap)
        return self.delay

    def reset(self) -> None:
        self.delay = 0.0


class TaskWorker:
    def __init__(
        self,
        node_id: str,
        store: Store,
        runtime: TaskRuntime,
        status_writer: StatusWriter,
        *,
        own_watch: bool = True,
        resync_interval: float = 30.0,
        clock: Callable[[], str] = now_iso,
    ) -> None:
        """own_watch=False: assignments arrive through reset() and feed() (a hollow fleet)."""
        self.node_id = node_id
        self._store = store
        self._runtime = runtime
        self._writer = status_writer
        self._resync_interval = resync_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        # Inputs, guarded by _lock.
        self._desired: dict[str, Assignment] | None = None  # None until the first snapshot
        self._status_stale = True
        self._status_snapshot: dict[str, TaskStatus] | None = None
        # The worker thread's own state.
        self._reported: dict[str, TaskStatus] = {}
        self._run_errors: dict[str, str] = {}
        self._thread = threading.Thread(target=self._loop, name=f"worker-{node_id}", daemon=True)
        self._watch = AssignmentWatch(store, node_id, self) if own_watch else None
        runtime.subscribe(self.poke)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        if self._watch is not None:
            self._watch.start()

    def close(self) -> None:
        """Stop the threads; containers and store keys are left as they are."""
        self._closed.set()
        self._wake.set()
        if self._watch is not None:
            self._watch.close()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=30)

    # -- inputs (any thread) -------------------------------------------------------------

    def reset(self, kvs: Iterable[KeyValue], statuses: Iterable[KeyValue] | None = None) -> None:
        """A fresh listing of assignments/<node>/: replaces what the worker knew. `statuses`, a
        listing of status/<node>/, saves the worker reading it itself (a fleet lists them all once)."""
        desired: dict[str, Assignment] = {}
        for kv in kvs:
            assignment = self._decode(kv)
            if assignment is not None:
                desired[assignment.task.id] = assignment
        reported = None if statuses is None else self._decode_statuses(statuses)
        with self._lock:
            self._desired = desired
            # Re-read what we reported too: the snapshot may follow a compaction or an outage.
            self._status_stale = reported is None
            self._status_snapshot = reported
        self._wake.set()

    def feed(self, events: Iterable[Event]) -> None:
        """Watch events under assignments/<node>/, in revision order, after a reset()."""
        with self._lock:
            if self._desired is None:
                return  # a snapshot follows; it includes these
            for ev in events:
                task_id = keyspace.last_component(ev.kv.key)
                if ev.type == "delete":
                    self._desired.pop(task_id, None)
                elif (assignment := self._decode(ev.kv)) is not None:
                    self._desired[task_id] = assignment
        self._wake.set()

    def poke(self, task_id: str = "") -> None:
        """Something about a task's container changed (runtime callback)."""
        self._wake.set()

    def _decode(self, kv: KeyValue) -> Assignment | None:
        try:
            return keyspace.decode(Assignment, kv.key, kv.value)
        except ShoalError as e:
            log.error("node %s: ignoring assignment: %s", self.node_id, e)
            return None

    # -- the worker thread ---------------------------------------------------------------

    def _loop(self) -> None:
        backoff = Backoff()
        timeout = self._resync_interval
        while not self._closed.is_set():
            self._wake.wait(timeout)
            self._wake.clear()
            if self._closed.is_set():
                break
            try:
                settled = self.sync()
            except Exception as e:  # the store or the runtime failed: retry, never die
                delay = backoff.next()
                log.warning("node %s: sync failed (retrying in %.1fs): %s", self.node_id, delay, e)
                timeout = delay
                continue
            backoff.reset()
            timeout = self._resync_interval if settled else 0.5

    def sync(self) -> bool:
        """One level-triggered pass; True when the node converged."""
        with self._lock:
            stale, self._status_stale = self._status_stale, False
            snapshot, self._status_snapshot = self._status_snapshot, None
            ready = self._desired is not None
        if snapshot is not None:
            self._reported = snapshot
        if stale:
            try:
                self._reported = self._list_statuses()
            except BaseException:
                with self._lock:
                    self._status_stale = True
                raise
        if not ready:
            return True
        for _ in range(MAX_PASSES):
            with self._lock:
                desired = dict(self._desired or {})
            self._forget(desired)
            actions = plan_node(
                desired, self._runtime.list(), self._reported, self._clock(), self._run_errors
            )
            if actions.empty:
                return True
            self._apply(actions)
            if not actions.touches_runtime:
                return True
        log.warning("node %s: did not converge in %d passes; retrying shortly", self.node_id, MAX_PASSES)
        return False

    def _list_statuses(self) -> dict[str, TaskStatus]:
        kvs, _ = self._store.list(keyspace.status_prefix(self.node_id))
        return self._decode_statuses(kvs)

    def _decode_statuses(self, kvs: Iterable[KeyValue]) -> dict[str, TaskStatus]:
        out = {}
        for kv in kvs:
            try:
                s = keyspace.decode(TaskStatus, kv.key, kv.value)
            except ShoalError as e:
                log.error("node %s: ignoring status: %s", self.node_id, e)
                continue
            out[s.task_id] = s
        return out

    def _forget(self, desired: dict[str, Assignment]) -> None:
        """Drop what we keep about tasks this node no longer has (the leader deletes their keys)."""
        for tid in [t for t in self._reported if t not in desired]:
            del self._reported[tid]
        for tid in [t for t in self._run_errors if t not in desired or t in self._reported]:
            del self._run_errors[tid]

    def _apply(self, actions: Actions) -> None:
        for cid in actions.remove:
            log.info("node %s: removing container %s", self.node_id, cid[:12])
            self._runtime.remove(cid)
        for cid in actions.stop:
            log.info("node %s: stopping container %s", self.node_id, cid[:12])
            self._runtime.stop(cid)
        for cid in actions.stop_unhealthy:
            log.info("node %s: stopping unhealthy container %s", self.node_id, cid[:12])
            self._runtime.stop_unhealthy(cid)
        for assignment in actions.run:
            self._run(assignment)
        if actions.report:
            written = self._writer.write(self.node_id, actions.report)
            for s in actions.report:
                # Not written means the assignment is gone: its delete event is on its way, and
                # keeping the status here stops us from retrying it until then.
                self._reported[s.task_id] = s
                if s.task_id not in written:
                    log.info(
                        "node %s: task %s is no longer assigned; status dropped", self.node_id, s.task_id
                    )

    def _run(self, assignment: Assignment) -> None:
        tid = assignment.task.id
        try:
            c = self._runtime.run(assignment)
        except ShoalError as e:
            message = " ".join(str(e).split())
        except Exception as e:  # an unexpected runtime failure still ends as a rejected task
            log.exception("node %s: task %s: run failed", self.node_id, tid)
            message = f"{type(e).__name__}: {e}"
        else:
            log.info("node %s: task %s runs in container %s", self.node_id, tid, c.container_id[:12])
            return
        log.warning("node %s: task %s rejected: %s", self.node_id, tid, message)
        self._run_errors[tid] = message


class AssignmentWatch:
    """List assignments/<node>/, then watch from the list's revision; re-list after a compaction
    or an outage (with backoff). Feeds a TaskWorker."""

    def __init__(self, store: Store, node_id: str, worker: TaskWorker) -> None:
        self._store = store
        self._prefix = keyspace.assignments_prefix(node_id)
        self._node_id = node_id
        self._worker = worker
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._watch: Watch | None = None
        self._thread = threading.Thread(target=self._loop, name=f"assignments-{node_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            watch = self._watch
        if watch is not None:
            watch.close()  # ends the iteration blocked in the watch thread
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        backoff = Backoff()
        while not self._closed.is_set():
            try:
                kvs, revision = self._store.list(self._prefix)
                self._worker.reset(kvs)
                watch = self._store.watch_prefix(self._prefix, revision + 1)
                with self._lock:
                    self._watch = watch
                if self._closed.is_set():
                    watch.close()
                    break
                backoff.reset()
                with watch:
                    for batch in watch:
                        self._worker.feed(batch)
            except Compacted:
                log.info("node %s: assignment history compacted; listing again", self._node_id)
            except ShoalError as e:
                if self._closed.is_set():
                    break
                delay = backoff.next()
                log.warning(
                    "node %s: assignment watch failed (retrying in %.1fs): %s", self._node_id, delay, e
                )
                self._closed.wait(delay)
