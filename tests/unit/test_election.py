"""Leader election on the in-memory store: its manual clock decides when leases run out."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from controller.api import keyspace
from controller.election import Election
from controller.store.base import Compare, Put
from controller.store.memory import MemoryStore
from tests.support.agent import wait_for


class CountingStore(MemoryStore):
    """The real in-memory store, counting lease renewals so a test can wait for the leader's."""

    keepalives = 0

    def keepalive(self, lease_id: int) -> int:
        ttl = super().keepalive(lease_id)
        self.keepalives += 1
        return ttl


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Candidate:
    """One Election with its callbacks recorded."""

    def __init__(self, store: MemoryStore, name: str) -> None:
        self.election = Election(store, name, ttl=2.0, retry_interval=0.05)
        self.name = name
        self.terms: list[Compare] = []
        self.deposed = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        self.election.start(self._elected, self._deposed)

    def _elected(self, fence: Compare) -> None:
        with self._lock:
            self.terms.append(fence)

    def _deposed(self) -> None:
        with self._lock:
            self.deposed += 1


@pytest.fixture
def store() -> Iterator[CountingStore]:
    s = CountingStore(ManualClock())
    yield s
    s.close()


@pytest.fixture
def candidates(store: MemoryStore) -> Iterator[list[Candidate]]:
    cs = [Candidate(store, f"ctl-{n}") for n in "abc"]
    for c in cs:
        c.start()
    yield cs
    for c in cs:
        c.election.stop()


def leader_of(cs: list[Candidate]) -> Candidate | None:
    leading = [c for c in cs if c.election.leading]
    assert len(leading) <= 1, f"two leaders: {[c.name for c in leading]}"
    return leading[0] if leading else None


def current_leader(cs: list[Candidate]) -> Candidate:
    """The leader, once its on_elected callback has run for its current term."""

    def elected() -> bool:
        c = leader_of(cs)
        return c is not None and bool(c.terms) and c.terms[-1] == c.election.fence

    wait_for(elected, what="a leader")
    found = leader_of(cs)
    assert found is not None
    return found


def fenced_write(store: MemoryStore, fence: Compare) -> bool:
    return store.txn([fence], [Put("/shoaltest/fenced", b"x")]).succeeded


def test_one_leader_among_three_and_the_key_names_it(store: MemoryStore, candidates: list[Candidate]) -> None:
    leader = current_leader(candidates)
    kv = store.get(keyspace.LEADER)
    assert kv is not None and kv.value.decode() == leader.name and kv.lease != 0
    assert leader.terms == [leader.election.fence]
    assert fenced_write(store, leader.terms[0])
    assert all(not c.terms for c in candidates if c is not leader)


def test_a_crashed_leaders_lease_expiry_elects_another_and_its_fence_fails(
    store: MemoryStore, candidates: list[Candidate]
) -> None:
    old = current_leader(candidates)
    old.election.stop()  # no keepalives, no revoke: a kill -9 as the others see it
    assert store.get(keyspace.LEADER) is not None  # the key outlives the process until its TTL
    store.advance(2.5)
    rest = [c for c in candidates if c is not old]
    new = current_leader(rest)
    assert new.terms and new.terms[-1] != old.terms[-1]
    assert not fenced_write(store, old.terms[-1])
    assert fenced_write(store, new.terms[-1])


def test_a_live_leader_whose_lease_ran_out_steps_down(
    store: MemoryStore, candidates: list[Candidate]
) -> None:
    old = current_leader(candidates)
    old_fence = old.terms[-1]
    store.advance(2.5)  # the lease expires between two keepalives (a stalled process, a slow etcd)
    wait_for(lambda: old.deposed == 1, what="the old leader to step down")
    wait_for(lambda: leader_of(candidates) is not None, what="a new term")
    new = current_leader(candidates)
    assert new.terms[-1] != old_fence  # a new term, even if the same candidate won it
    assert not fenced_write(store, old_fence)


def test_the_leaders_keepalives_hold_the_lease_while_time_passes(
    store: CountingStore, candidates: list[Candidate]
) -> None:
    leader = current_leader(candidates)
    for _ in range(4):  # 4 s in total, twice the TTL, in steps each shorter than the TTL
        renewals = store.keepalives
        wait_for(lambda: store.keepalives > renewals, what="the leader's next keepalive")  # noqa: B023
        store.advance(1.5)
    assert leader_of(candidates) is leader and leader.deposed == 0 and len(leader.terms) == 1


def test_resign_hands_over_without_waiting_for_the_ttl(
    store: MemoryStore, candidates: list[Candidate]
) -> None:
    old = current_leader(candidates)
    old.election.resign()
    assert old.deposed == 1 and not old.election.leading
    new = current_leader([c for c in candidates if c is not old])  # no clock advance needed
    assert not fenced_write(store, old.terms[-1])
    assert fenced_write(store, new.terms[-1])


def test_a_follower_that_stops_leaves_no_lease_behind(store: MemoryStore) -> None:
    leader, follower = Candidate(store, "ctl-x"), Candidate(store, "ctl-y")
    leader.start()
    wait_for(lambda: leader.election.leading, what="ctl-x to lead")
    follower.start()
    follower.election.stop()
    leader.election.resign()
    assert store.get(keyspace.LEADER) is None
    assert store.list("/")[0] == []
