"""One behaviour suite for every Store: the in-memory fake and a real etcd 3.4.

Each test gets a fresh key prefix; one etcd serves the whole module. Time passes through
the harness: the fake's clock is advanced, etcd is waited on.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.errors import InvalidArgument, NotFound
from controller.store.base import (
    Compacted,
    Compare,
    Delete,
    Event,
    Get,
    Put,
    Store,
    Watch,
    absent,
    unchanged,
)
from controller.store.etcd import EtcdStore
from controller.store.memory import MemoryStore
from tests.support.etcd import EtcdServer

WAIT = 5.0  # upper bound for anything asynchronous; etcd expires leases every ~0.5 s


@dataclass(frozen=True)
class Harness:
    store: Store
    prefix: str
    pass_time: Callable[[float], None]

    def key(self, name: str) -> str:
        return self.prefix + name


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def etcd_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with EtcdServer(Path(tmp_path_factory.mktemp("etcd"))) as server:
        yield server.endpoint


@pytest.fixture(params=["memory", "etcd"])
def h(request: pytest.FixtureRequest) -> Iterator[Harness]:
    prefix = f"/shoaltest-{uuid.uuid4().hex}/"
    store: Store
    pass_time: Callable[[float], None]
    if request.param == "memory":
        mem = MemoryStore(clock=ManualClock())
        store, pass_time = mem, mem.advance
    else:
        store, pass_time = EtcdStore([request.getfixturevalue("etcd_endpoint")]), time.sleep
    try:
        yield Harness(store, prefix, pass_time)
    finally:
        store.close()


class Collector:
    """Reads a watch on a thread, so a store that misbehaves fails the test instead of hanging it."""

    def __init__(self, watch: Watch) -> None:
        self.watch = watch
        self.events: queue.SimpleQueue[Event | BaseException | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for batch in self.watch:
                assert batch, "a watch never yields an empty batch"
                for e in batch:
                    self.events.put(e)
        except BaseException as err:
            self.events.put(err)
        else:
            self.events.put(None)  # iteration ended

    def take(self, n: int, timeout: float = WAIT) -> list[Event]:
        out: list[Event] = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            item = self.events.get(timeout=max(deadline - time.monotonic(), 0.001))
            if not isinstance(item, Event):
                raise AssertionError(f"watch ended after {out!r}: {item!r}")
            out.append(item)
        return out

    def close(self) -> None:
        self.watch.close()
        self.thread.join(WAIT)


def test_put_get_list_revisions(h: Harness) -> None:
    s, a, b = h.store, h.key("a"), h.key("b")
    assert s.get(a) is None
    r1 = s.put(a, b"1")
    kv = s.get(a)
    assert kv is not None
    assert (kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease) == (b"1", r1, r1, 1, 0)
    r2 = s.put(a, b"2")
    r3 = s.put(b, b"3")
    assert r1 < r2 < r3
    kv = s.get(a)
    assert kv is not None and (kv.create_revision, kv.mod_revision, kv.version) == (r1, r2, 2)
    kvs, rev = s.list(h.prefix)
    assert [(k.key, k.value) for k in kvs] == [(a, b"2"), (b, b"3")]
    assert rev == r3
    assert s.list(h.key("nothing/")) == ([], r3)


def test_delete(h: Harness) -> None:
    s, a = h.store, h.key("a")
    s.put(a, b"1")
    assert s.delete(a) is True
    assert s.get(a) is None
    _, rev = s.list(h.prefix)
    assert s.delete(a) is False
    assert s.list(h.prefix)[1] == rev, "deleting an absent key writes nothing"
    r = s.put(a, b"again")
    kv = s.get(a)
    assert kv is not None and (kv.create_revision, kv.version) == (r, 1), "a re-created key starts over"


def test_txn_create_if_absent_succeeds_once(h: Harness) -> None:
    s, k = h.store, h.key("subnet/10.5.1.0-24")
    first = s.txn([absent(k)], [Put(k, b"node-1")], [Get(k)])
    assert first.succeeded and first.responses == (None,)
    kv = s.get(k)
    assert kv is not None and kv.mod_revision == first.revision
    second = s.txn([absent(k)], [Put(k, b"node-2")], [Get(k)])
    assert not second.succeeded
    assert second.revision == first.revision, "a failed txn with only reads writes nothing"
    assert second.responses == (kv,)
    assert s.get(k) == kv


def test_txn_mod_revision_guards_read_modify_write(h: Harness) -> None:
    s, k = h.store, h.key("service")
    s.put(k, b"v1")
    read = s.get(k)
    assert read is not None
    s.put(k, b"v2-by-someone-else")
    stale = s.txn([unchanged(k, read.mod_revision)], [Put(k, b"v2-mine"), Put(h.key("other"), b"x")])
    assert not stale.succeeded
    assert s.get(h.key("other")) is None
    now = s.get(k)
    assert now is not None and now.value == b"v2-by-someone-else"
    fresh = s.txn([unchanged(k, now.mod_revision)], [Put(k, b"v3"), Delete(h.key("missing"))])
    assert fresh.succeeded and fresh.responses == (None, False)
    kv = s.get(k)
    assert kv is not None and (kv.value, kv.mod_revision) == (b"v3", fresh.revision)


def test_txn_compare_targets_and_operators(h: Harness) -> None:
    s, k, gone = h.store, h.key("k"), h.key("gone")
    s.put(k, b"m")
    s.put(k, b"m")
    kv = s.get(k)
    assert kv is not None

    def holds(*compares: Compare) -> bool:
        return s.txn(list(compares), []).succeeded

    assert holds(Compare(k, "version", "==", 2), Compare(k, "version", ">", 1), Compare(k, "version", "<", 3))
    assert holds(Compare(k, "create_revision", "<", kv.mod_revision), Compare(k, "mod_revision", "!=", 0))
    assert holds(
        Compare(k, "value", "==", b"m"), Compare(k, "value", ">", b"a"), Compare(k, "value", "<", b"n")
    )
    assert not holds(Compare(k, "value", "!=", b"m"))
    assert not holds(Compare(k, "version", "==", 2), Compare(k, "version", "==", 3)), "all must hold"
    # An absent key: revisions and version read as 0, and any value compare is false.
    assert holds(Compare(gone, "version", "==", 0), Compare(gone, "mod_revision", "<", 1))
    assert not holds(Compare(gone, "value", "!=", b"x"))


def test_txn_refuses_a_key_written_twice(h: Harness) -> None:
    k = h.key("k")
    with pytest.raises(InvalidArgument):
        h.store.txn([], [Put(k, b"1"), Delete(k)])
    assert h.store.get(k) is None


def test_watch_replays_from_a_revision_then_follows(h: Harness) -> None:
    s, a, b = h.store, h.key("a"), h.key("b")
    s.put(h.prefix.rstrip("/") + "-sibling", b"not under the prefix")
    r1 = s.put(a, b"1")
    s.put(b, b"2")
    s.delete(a)
    w = Collector(s.watch_prefix(h.prefix, r1))
    try:
        put_a, put_b, del_a = w.take(3)
        assert (put_a.type, put_a.kv.key, put_a.kv.value, put_a.prev) == ("put", a, b"1", None)
        assert (put_b.type, put_b.kv.key) == ("put", b)
        assert (del_a.type, del_a.kv.key) == ("delete", a)
        assert del_a.prev is not None and del_a.prev.value == b"1"
        assert put_a.kv.mod_revision < put_b.kv.mod_revision < del_a.kv.mod_revision
        r = s.put(b, b"3")
        (live,) = w.take(1)
        assert (live.type, live.kv.value, live.kv.mod_revision, live.kv.version) == ("put", b"3", r, 2)
        assert live.prev is not None and live.prev.value == b"2"
    finally:
        w.close()


def test_watch_from_a_compacted_revision_raises_compacted(h: Harness) -> None:
    s = h.store
    r1 = s.put(h.key("a"), b"1")
    r2 = s.put(h.key("a"), b"2")
    s.compact(r2)
    with pytest.raises(Compacted) as caught, s.watch_prefix(h.prefix, r1) as w:
        next(w)
    assert caught.value.revision >= r2
    # The caller's recovery: list, then watch from the list's revision + 1.
    kvs, rev = s.list(h.prefix)
    assert [kv.value for kv in kvs] == [b"2"]
    w2 = Collector(s.watch_prefix(h.prefix, rev + 1))
    try:
        s.put(h.key("b"), b"3")
        assert [e.kv.key for e in w2.take(1)] == [h.key("b")]
    finally:
        w2.close()


def test_key_on_a_lease_disappears_after_the_ttl(h: Harness) -> None:
    s, k = h.store, h.key("nodes-alive/n1")
    lease = s.grant_lease(1)
    assert lease.ttl >= 1
    rev = s.put(k, b"alive", lease=lease.id)
    kv = s.get(k)
    assert kv is not None and kv.lease == lease.id
    w = Collector(s.watch_prefix(h.prefix, rev))
    try:
        assert w.take(1)[0].type == "put"
        deadline = time.monotonic() + lease.ttl + WAIT
        while s.get(k) is not None and time.monotonic() < deadline:
            h.pass_time(0.25)
        assert s.get(k) is None
        (gone,) = w.take(1)
        assert (gone.type, gone.kv.key) == ("delete", k)
        assert gone.prev is not None and gone.prev.lease == lease.id
    finally:
        w.close()
    with pytest.raises(NotFound):
        s.keepalive(lease.id)


def test_keepalive_keeps_the_key(h: Harness) -> None:
    s, k = h.store, h.key("nodes-alive/n1")
    lease = s.grant_lease(1)
    s.put(k, b"alive", lease=lease.id)
    try:
        for _ in range(8):  # 2 s: twice the TTL
            h.pass_time(0.25)
            assert s.keepalive(lease.id) >= 1
        assert s.get(k) is not None
    finally:
        s.revoke(lease.id)


def test_keepalive_many_renews_live_leases_and_reports_lost_ones(h: Harness) -> None:
    s, k = h.store, h.key("nodes-alive/n1")
    live, gone = s.grant_lease(1), s.grant_lease(60)
    s.put(k, b"alive", lease=live.id)
    s.revoke(gone.id)
    try:
        assert s.keepalive_many([]) == {}
        for _ in range(8):  # 2 s: twice the TTL of the live lease
            h.pass_time(0.25)
            ttls = s.keepalive_many([live.id, gone.id])
            assert ttls[live.id] >= 1 and ttls[gone.id] == 0
        assert s.get(k) is not None
    finally:
        s.revoke(live.id)


def test_revoke_deletes_the_keys_of_the_lease_only(h: Harness) -> None:
    s, a, b, free = h.store, h.key("a"), h.key("b"), h.key("free")
    lease = s.grant_lease(60)
    s.put(a, b"1", lease=lease.id)
    s.put(b, b"2", lease=lease.id)
    s.put(free, b"3", lease=lease.id)
    s.put(free, b"3")  # a put without a lease detaches the key from it
    s.revoke(lease.id)
    assert [kv.key for kv in s.list(h.prefix)[0]] == [free]
    with pytest.raises(NotFound):
        s.revoke(lease.id)
    with pytest.raises(NotFound):
        s.keepalive(lease.id)
    with pytest.raises(NotFound):
        s.put(a, b"x", lease=lease.id)


def test_closing_a_watch_from_another_thread_ends_iteration(h: Harness) -> None:
    w = Collector(h.store.watch_prefix(h.prefix, 0))
    time.sleep(0.1)  # let the reader block in next()
    w.watch.close()
    assert w.events.get(timeout=WAIT) is None
    w.thread.join(WAIT)
    assert not w.thread.is_alive()
