"""The work queue: dedup, timed entries by an injected clock, whole rounds."""

from __future__ import annotations

import threading

from controller.orchestrator import WorkQueue


class ManualClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_round_takes_everything_queued_once() -> None:
    q = WorkQueue(ManualClock())
    q.add(["web", "db"])
    q.add(["web"])
    assert q.take_round(timeout=0) == {"web", "db"}
    assert q.take_round(timeout=0) == set()


def test_timed_entries_wait_for_the_clock_and_the_earliest_time_wins() -> None:
    clock = ManualClock()
    q = WorkQueue(clock)
    q.add_after("web", 110.0)
    q.add_after("web", 105.0)
    q.add_after("web", 120.0)
    assert q.scheduled("web") == 105.0
    assert q.take_round(timeout=0) == set()
    clock.now = 105.0
    assert q.take_round(timeout=0) == {"web"}
    assert q.scheduled("web") is None and len(q) == 0


def test_a_queued_name_drops_its_timer_when_taken() -> None:
    clock = ManualClock()
    q = WorkQueue(clock)
    q.add_after("web", 200.0)
    q.add(["web"])
    assert q.take_round(timeout=0) == {"web"}
    clock.now = 300.0
    assert q.take_round(timeout=0) == set()  # the pass asks again itself if it still needs to


def test_a_blocked_taker_wakes_on_add_and_on_close() -> None:
    q = WorkQueue(ManualClock())
    got: list[set[str]] = []

    def take() -> None:
        got.append(q.take_round())

    taker = threading.Thread(target=take)
    taker.start()
    q.add(["web"])
    taker.join(timeout=10)
    assert got == [{"web"}]
    taker = threading.Thread(target=take)
    taker.start()
    q.close()
    taker.join(timeout=10)
    assert got == [{"web"}, set()] and not taker.is_alive()
