"""What only the fake does: a manual clock, lazy expiry, advance(), poll()."""

from __future__ import annotations

import threading

import pytest

from agent.errors import InvalidArgument, NotFound
from controller.store.base import Compacted
from controller.store.memory import MemoryStore


class ManualClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_leases_expire_lazily_by_the_injected_clock() -> None:
    clock = ManualClock()
    s = MemoryStore(clock)
    lease = s.grant_lease(10)
    s.put("/a", b"1", lease=lease.id)
    clock.now += 9.9
    assert s.get("/a") is not None
    clock.now += 0.1  # the deadline is inclusive: at ttl the lease is gone
    assert s.get("/a") is None
    with pytest.raises(NotFound):
        s.keepalive(lease.id)


def test_expiry_deletes_all_keys_of_a_lease_at_one_revision() -> None:
    s = MemoryStore(ManualClock())
    lease = s.grant_lease(5)
    s.put("/a", b"1", lease=lease.id)
    rev = s.put("/b", b"2", lease=lease.id)
    w = s.watch_prefix("/", rev + 1)
    s.advance(5)
    events = w.poll()
    assert [(e.type, e.kv.key, e.kv.mod_revision) for e in events] == [
        ("delete", "/a", rev + 1),
        ("delete", "/b", rev + 1),
    ]
    assert s.list("/")[1] == rev + 1


def test_keepalive_pushes_the_deadline_from_now() -> None:
    s = MemoryStore(ManualClock())
    lease = s.grant_lease(3)
    s.put("/a", b"1", lease=lease.id)
    for _ in range(5):
        s.advance(2)
        assert s.keepalive(lease.id) == 3
    s.advance(3)
    assert s.get("/a") is None


def test_a_lease_without_keys_expires_without_a_write() -> None:
    s = MemoryStore(ManualClock())
    rev = s.put("/a", b"1")
    s.grant_lease(1)
    s.advance(2)
    assert s.list("/")[1] == rev


def test_a_tiny_ttl_is_raised_to_one_second_like_etcd() -> None:
    assert MemoryStore(ManualClock()).grant_lease(0).ttl == 1


def test_advance_wakes_a_blocked_watch() -> None:
    s = MemoryStore(ManualClock())
    lease = s.grant_lease(2)
    rev = s.put("/a", b"1", lease=lease.id)
    w = s.watch_prefix("/", rev + 1)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.extend(e.type for e in next(w)))
    reader.start()
    s.advance(2)
    reader.join(2)
    assert got == ["delete"]


def test_watch_from_zero_starts_at_the_next_write_and_poll_does_not_block() -> None:
    s = MemoryStore(ManualClock())
    s.put("/old", b"1")
    w = s.watch_prefix("/", 0)
    assert w.poll() == []
    s.put("/new", b"2")
    assert [e.kv.key for e in w.poll()] == ["/new"]


def test_compaction_drops_history_and_checks_the_revision() -> None:
    s = MemoryStore(ManualClock())
    r1 = s.put("/a", b"1")
    r2 = s.put("/a", b"2")
    with pytest.raises(InvalidArgument):
        s.compact(r2 + 1)
    s.compact(r2)
    with pytest.raises(Compacted):
        s.compact(r1)
    with pytest.raises(Compacted):
        s.watch_prefix("/", r1).poll()
    assert [e.kv.value for e in s.watch_prefix("/", r2).poll()] == [b"2"]


def test_closing_the_store_ends_its_watches() -> None:
    s = MemoryStore(ManualClock())
    w = s.watch_prefix("/", 0)
    s.close()
    assert list(w) == []
