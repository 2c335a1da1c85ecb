"""Leader election over the store: one lease-held key, fenced writes.

A candidate grants a lease and creates LEADER with it only if LEADER is absent. The winner's
fence is `Compare(LEADER, "create_revision", "==", <revision of that put>)`: every later key
created there has a higher create revision, so the fence is unique to one term and a deposed
leader's fenced writes fail even if it has not noticed yet. Followers watch LEADER from the
revision they lost at, so a deletion in between is never missed, and campaign again the
moment it goes. A leader renews its lease every ttl/3 and steps down as soon as a renewal
fails or the key changes hands.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable

from agent.errors import NotFound, ShoalError
from controller.api.keyspace import LEADER
from controller.store.base import Compare, Get, KeyValue, Put, Store, Watch, absent

log = logging.getLogger(__name__)

OnElected = Callable[[Compare], None]
OnDeposed = Callable[[], None]


def fence_for(create_revision: int) -> Compare:
    """The guard every write of the leader elected at `create_revision` carries."""
    return Compare(LEADER, "create_revision", "==", create_revision)


def holds(kv: KeyValue | None, fence: Compare) -> bool:
    """Whether the LEADER key as read still belongs to the term of `fence`."""
    return kv is not None and kv.create_revision == fence.operand


class Election:
    def __init__(
        self, store: Store, candidate_id: str, ttl: float = 2.0, retry_interval: float = 0.5
    ) -> None:
        self._store = store
        self.candidate_id = candidate_id
        self.ttl = ttl
        self._retry = retry_interval
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._watch: Watch | None = None  # the watch a blocked thread sits in; stop() closes it
        self._lease: int | None = None
        self._fence: Compare | None = None
        self._thread: threading.Thread | None = None

    @property
    def fence(self) -> Compare | None:
        """Our term's fence while we lead, else None."""
        return self._fence

    @property
    def leading(self) -> bool:
        return self._fence is not None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, on_elected: OnElected, on_deposed: OnDeposed) -> None:
        self._thread = threading.Thread(
            target=self.run, args=(on_elected, on_deposed), name=f"election-{self.candidate_id}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """End the loop without giving up the lease (a crash, as far as others can tell)."""
        self._stop.set()
        self._close_watch()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def resign(self) -> None:
        """Clean shutdown: stop (calling on_deposed if we lead), then revoke the lease so
        another candidate takes over at once instead of after the TTL."""
        self.stop()
        lease, self._lease = self._lease, None
        if lease is not None:
            try:
                self._store.revoke(lease)
            except ShoalError as err:  # expired already, or etcd is gone: the TTL will do it
                log.info("election: revoking lease %x on resign: %s", lease, err)

    # -- the loop ------------------------------------------------------------------------

    def run(self, on_elected: OnElected, on_deposed: OnDeposed) -> None:
        """Campaign, lead, follow, until stop(). Callbacks run on this thread."""
        while not self._stop.is_set():
            try:
                lost_at = self._campaign()
                if lost_at is None:
                    self._lead(on_elected, on_deposed)
                else:
                    self._await_vacancy(lost_at)
            except ShoalError as err:  # etcd unreachable and the like: try again shortly
                log.warning("election: %s", err)
                self._stop.wait(self._retry)
            except Exception:  # a bug in a callback must not end the election thread silently
                log.exception("election: unexpected failure; campaigning again")
                self._stop.wait(self._retry)

    def _campaign(self) -> int | None:
        """Try to become leader. None if we won, else the revision at which we lost."""
        lease = self._store.grant_lease(max(1, math.ceil(self.ttl)))
        result = self._store.txn(
            [absent(LEADER)], [Put(LEADER, self.candidate_id.encode(), lease.id)], [Get(LEADER)]
        )
        if result.succeeded:
            self._lease = lease.id
            self._fence = fence_for(result.revision)
            return None
        try:
            self._store.revoke(lease.id)
        except NotFound:
            pass
        return result.revision

    def _await_vacancy(self, lost_at: int) -> None:
        """Block until LEADER is deleted after revision `lost_at` (or stop())."""
        self._await_delete(lost_at + 1, self._stop)

    def _await_delete(self, start_revision: int, cancel: threading.Event) -> bool:
        """Watch LEADER from start_revision: True once it is deleted, False when cancelled.

        Whoever cancels sets the event first and then closes self._watch under the lock, so a
        watch is either never opened or is closed: nobody blocks on a cancelled watch."""
        with self._lock:
            if cancel.is_set() or self._stop.is_set():
                return False
            watch = self._watch = self._store.watch_prefix(LEADER, start_revision)
        try:
            for batch in watch:
                if any(e.kv.key == LEADER and e.type == "delete" for e in batch):
                    return True
            return False
        finally:
            watch.close()
            with self._lock:
                self._watch = None

    def _close_watch(self) -> None:
        with self._lock:
            watch = self._watch
        if watch is not None:
            watch.close()

    def _lead(self, on_elected: OnElected, on_deposed: OnDeposed) -> None:
        fence = self._fence
        assert fence is not None and self._lease is not None
        lease = self._lease
        log.info("election: %s leads (fence create_revision %s)", self.candidate_id, fence.operand)
        gone, ended = threading.Event(), threading.Event()
        watcher = threading.Thread(
            target=self._watch_own_key,
            args=(fence, gone, ended),
            name=f"leader-key-{self.candidate_id}",
            daemon=True,
        )
        watcher.start()
        try:
            on_elected(fence)
            interval = self.ttl / 3
            while not (self._stop.is_set() or gone.is_set()):
                if gone.wait(interval) or self._stop.is_set():
                    break
                try:
                    self._store.keepalive(lease)
                except ShoalError as err:
                    log.warning("election: keepalive of lease %x failed: %s", lease, err)
                    break
        finally:
            self._fence = None
            ended.set()
            self._close_watch()
            watcher.join()
            on_deposed()
        if not self._stop.is_set():
            # Stepped down on our own: give the key up at once if it is still ours, so the next
            # leader does not wait out the TTL. Best effort: it may be gone with the lease.
            self._lease = None
            try:
                self._store.revoke(lease)
            except ShoalError:
                pass
            log.info("election: %s stepped down", self.candidate_id)

    def _watch_own_key(self, fence: Compare, gone: threading.Event, ended: threading.Event) -> None:
        """Sets `gone` when LEADER stops being ours (lease expired, deleted by hand)."""
        assert isinstance(fence.operand, int)
        try:
            if self._await_delete(fence.operand + 1, ended):
                gone.set()
        except ShoalError as err:
            if not ended.is_set():
                log.warning("election: watching %s failed: %s", LEADER, err)
                gone.set()
