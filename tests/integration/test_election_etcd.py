"""Leader election on a real etcd 3.4: takeover after the leader dies, fencing of the old term."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.api import keyspace
from controller.election import Election
from controller.store.base import Compare, Put
from controller.store.etcd import EtcdStore
from tests.support.agent import wait_for
from tests.support.etcd import EtcdServer


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    with EtcdServer(Path(tmp_path_factory.mktemp("etcd"))) as server:
        yield server


class Candidate:
    def __init__(self, endpoint: str, name: str) -> None:
        self.store = EtcdStore([endpoint])
        self.election = Election(self.store, name, ttl=2.0, retry_interval=0.1)
        self.name = name
        self.fences: list[Compare] = []
        self.elected = threading.Event()
        self.deposed = threading.Event()
        self.killed = False

    def start(self) -> None:
        self.election.start(self._on_elected, self.deposed.set)

    def _on_elected(self, fence: Compare) -> None:
        self.fences.append(fence)
        self.elected.set()

    def kill(self) -> None:
        """As a kill -9 looks from etcd: no more keepalives, no revoke, the connection gone."""
        self.killed = True
        self.election.stop()
        self.store.close()

    def close(self) -> None:
        if not self.killed:
            self.election.resign()
            self.store.close()


def test_takeover_after_the_leader_dies_and_the_old_fence_fails(etcd: EtcdServer) -> None:
    observer = EtcdStore([etcd.endpoint])
    a, b = Candidate(etcd.endpoint, "ctl-a"), Candidate(etcd.endpoint, "ctl-b")
    try:
        a.start()
        assert a.elected.wait(10)
        b.start()
        kv = observer.get(keyspace.LEADER)
        assert kv is not None and kv.value == b"ctl-a"
        old = a.fences[-1]
        assert observer.txn([old], [Put("/shoaltest/fenced", b"a")]).succeeded

        _, revision = observer.list(keyspace.LEADER)
        with observer.watch_prefix(keyspace.LEADER, revision + 1) as watch:
            a.kill()
            killed = time.monotonic()
            for batch in watch:
                if any(e.type == "put" and e.kv.value == b"ctl-b" for e in batch):
                    break
        takeover = time.monotonic() - killed
        print(f"\nleader died -> new leader elected in {takeover:.2f} s (ttl 2 s, target < 3 s)")
        assert b.elected.wait(10)
        new = b.fences[-1]
        assert new != old
        assert not observer.txn([old], [Put("/shoaltest/fenced", b"stale")]).succeeded
        assert observer.txn([new], [Put("/shoaltest/fenced", b"b")]).succeeded
        fenced = observer.get("/shoaltest/fenced")
        assert fenced is not None and fenced.value == b"b"
    finally:
        for c in (a, b):
            c.close()
        observer.close()


def test_resign_hands_over_at_once_and_a_stepped_down_leader_stops(etcd: EtcdServer) -> None:
    a, b = Candidate(etcd.endpoint, "ctl-c"), Candidate(etcd.endpoint, "ctl-d")
    try:
        a.start()
        assert a.elected.wait(10)
        b.start()
        a.election.resign()
        assert a.deposed.is_set() and not a.election.leading
        assert b.elected.wait(10)
        wait_for(lambda: b.election.leading, what="ctl-d to lead")
        # Someone deletes the key by hand: the leader steps down at once rather than at its TTL.
        b.store.delete(keyspace.LEADER)
        assert b.deposed.wait(10)
    finally:
        for c in (a, b):
            c.close()
