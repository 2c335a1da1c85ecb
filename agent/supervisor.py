"""One thread that learns when container monitors exit and runs delayed callbacks (restarts).

Monitors are watched through pidfds, which work for processes that are not our children:
that is what lets a restarted agent adopt monitors started by its predecessor.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import selectors
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass(order=True)
class Timer:
    when: float
    seq: int
    callback: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class Supervisor:
    def __init__(self) -> None:
        self._sel = selectors.DefaultSelector()
        self._timers: list[Timer] = []
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._wake()
        self._thread.join(timeout=5)

    def watch_pid(self, pid: int, on_exit: Callable[[], None]) -> None:
        """Call `on_exit` (on the supervisor thread) once `pid` has exited; at once if it is gone."""
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            self.call_later(0, on_exit)
            return
        with self._lock:
            self._sel.register(fd, selectors.EVENT_READ, on_exit)
        self._wake()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(time.monotonic() + delay, next(self._seq), callback)
        with self._lock:
            heapq.heappush(self._timers, timer)
        self._wake()
        return timer

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass  # a wake-up is already pending

    def _next_timeout(self) -> float | None:
        with self._lock:
            while self._timers and self._timers[0].cancelled:
                heapq.heappop(self._timers)
            if not self._timers:
                return None
            return max(0.0, self._timers[0].when - time.monotonic())

    def _loop(self) -> None:
        while not self._stopping:
            for key, _ in self._sel.select(self._next_timeout()):
                if key.data is None:
                    while True:
                        try:
                            os.read(self._wake_r, 4096)
                        except BlockingIOError:
                            break
                    continue
                with self._lock:
                    self._sel.unregister(key.fd)
                os.close(key.fd)
                self._run(key.data)
            now = time.monotonic()
            due = []
            with self._lock:
                while self._timers and self._timers[0].when <= now:
                    timer = heapq.heappop(self._timers)
                    if not timer.cancelled:
                        due.append(timer)
            for timer in due:
                self._run(timer.callback)

    @staticmethod
    def _run(callback: Callable[[], None]) -> None:
        try:
            callback()
        except Exception:
            # One container's failure must not stop supervision of the others.
            log.exception("supervisor callback failed")
