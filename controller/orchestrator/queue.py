"""The orchestrator's work queue: service names to reconcile, deduplicated, some not before a time.

The worker takes a *round*: every name that is due at once, so one pass builds one cluster
snapshot for all of them. Times are the orchestrator's clock (the one reconcile's requeue_at is
in); waiting is on the real clock, capped, so an injected clock that jumps is noticed quickly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

# Longest real wait before re-reading the clock: a manual clock may have moved meanwhile.
MAX_WAIT = 0.25


class WorkQueue:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._ready: set[str] = set()
        self._later: dict[str, float] = {}  # name -> earliest time it must run
        self._closed = False

    def add(self, names: Iterable[str]) -> None:
        with self._cond:
            before = len(self._ready)
            self._ready.update(names)
            if len(self._ready) != before:
                self._cond.notify_all()

    def add_after(self, name: str, when: float) -> None:
        """Run `name` at `when` unless something else queues it earlier; the earliest time wins."""
        with self._cond:
            if when < self._later.get(name, float("inf")):
                self._later[name] = when
                self._cond.notify_all()

    def take_round(self, timeout: float | None = None) -> set[str]:
        """Every name due now (empty on timeout or close). Timed entries that became due move
        into the round; a name in the round loses its timer, since the pass re-plans it anyway
        and asks again if it still needs a later run."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._closed:
                now = self._clock()
                due = {n for n, when in self._later.items() if when <= now}
                if self._ready or due:
                    batch = self._ready | due
                    self._ready = set()
                    for name in batch:
                        self._later.pop(name, None)
                    return batch
                wait = MAX_WAIT
                if self._later:
                    wait = min(wait, max(0.0, min(self._later.values()) - now))
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return set()
                    wait = min(wait, left)
                self._cond.wait(wait)
            return set()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._ready | set(self._later))

    def scheduled(self, name: str) -> float | None:
        """When `name` is queued to run later (tests, status)."""
        with self._cond:
            return self._later.get(name)
