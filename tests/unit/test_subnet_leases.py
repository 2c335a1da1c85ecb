"""Subnet leases on the in-memory store, whose manual clock makes TTLs deterministic.

tests/integration/test_subnet_leases_etcd.py runs the same behaviours against a real etcd.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from agent.errors import InvalidArgument
from controller.store.base import KeyValue
from controller.store.memory import MemoryStore
from netplugin.config import NetworkConfig, validate_config
from netplugin.subnet import keyspace
from netplugin.subnet.allocator import OutOfSubnets
from netplugin.subnet.leases import LeaseManager, LeaseWatcher, SubnetLease, SubnetLost, load_previous
from tests.support.agent import wait_for

P = keyspace.DEFAULT_PREFIX
CONFIG = validate_config({"Network": "10.244.0.0/16"})
SMALL = validate_config({"Network": "10.244.0.0/22"})  # three subnets
TTL = 10
MAC = "0a:58:0a:f4:00:01"


def ip(n: int) -> IPv4Address:
    return IPv4Address(f"10.250.0.{n}")


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store() -> Iterator[MemoryStore]:
    s = MemoryStore(ManualClock())
    yield s
    s.close()


def manager(
    store: MemoryStore, tmp: Path | None = None, config: NetworkConfig = CONFIG, seed: int = 1
) -> LeaseManager:
    return LeaseManager(store, config, P, TTL, state_dir=tmp, rng=random.Random(seed))


def key_of(subnet: IPv4Network) -> str:
    return keyspace.subnet_key(P, subnet)


def stored(store: MemoryStore, subnet: IPv4Network) -> KeyValue:
    kv = store.get(key_of(subnet))
    assert kv is not None, f"no lease key for {subnet}"
    return kv


def test_acquire_writes_flannels_lease_on_a_ttl_lease(store: MemoryStore, tmp_path: Path) -> None:
    m = manager(store, tmp_path)
    lease = m.acquire(ip(1), "vxlan", 1, MAC)
    assert CONFIG.leasable(lease.subnet)
    assert lease == SubnetLease(lease.subnet, ip(1), "vxlan", 1, MAC)
    kv = stored(store, lease.subnet)
    assert json.loads(kv.value) == {
        "PublicIP": "10.250.0.1",
        "BackendType": "vxlan",
        "BackendData": {"VNI": 1, "VtepMAC": MAC},
    }
    assert kv.lease == m.lease_id != 0
    assert load_previous(tmp_path) == lease.subnet


def test_nodes_get_distinct_subnets(store: MemoryStore) -> None:
    leases = [manager(store, seed=7).acquire(ip(n), "host-gw") for n in range(1, 4)]
    assert len({le.subnet for le in leases}) == 3


def test_out_of_subnets_is_a_clear_error_and_takes_nothing(store: MemoryStore) -> None:
    for n in range(1, 4):
        manager(store, config=SMALL).acquire(ip(n), "host-gw")
    before = store.list(keyspace.subnets_prefix(P))
    with pytest.raises(OutOfSubnets, match=r"all 3 /24 subnets of 10\.244\.1\.0/24\.\.10\.244\.3\.0/24"):
        manager(store, config=SMALL).acquire(ip(9), "host-gw")
    assert store.list(keyspace.subnets_prefix(P))[0] == before[0]


class PausingStore(MemoryStore):
    """A real MemoryStore whose first `list` calls wait for each other: every node reads the
    same (empty) lease set before any of them writes, the worst case of a simultaneous start."""

    def __init__(self, parties: int) -> None:
        super().__init__(ManualClock())
        self.barrier = threading.Barrier(parties, timeout=10)
        self.paused = 0
        self.lock = threading.Lock()

    def list(self, prefix: str) -> tuple[list[KeyValue], int]:
        result = super().list(prefix)
        with self.lock:
            self.paused += 1
            pause = self.paused <= self.barrier.parties
        if pause:
            self.barrier.wait()
        return result


def test_nodes_racing_for_the_same_subnet_never_share_it() -> None:
    store = PausingStore(parties=3)
    got: dict[int, SubnetLease] = {}

    def node(n: int) -> None:  # the same seed: every node first picks the same subnet
        got[n] = LeaseManager(store, SMALL, P, TTL, rng=random.Random(3)).acquire(ip(n), "host-gw")

    threads = [threading.Thread(target=node, args=(n,)) for n in (1, 2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(got) == [1, 2, 3]
    assert len({le.subnet for le in got.values()}) == 3
    for le in got.values():
        assert keyspace.decode_lease(le.subnet, "k", stored(store, le.subnet).value).public_ip == le.public_ip


def test_ttl_expiry_frees_the_subnet_for_another_node(store: MemoryStore) -> None:
    first = manager(store, config=SMALL).acquire(ip(1), "host-gw")
    store.advance(TTL)
    assert store.get(key_of(first.subnet)) is None
    second = manager(store, config=SMALL).acquire(ip(2), "host-gw", previous=first.subnet)
    assert second.subnet == first.subnet


def test_renewal_keeps_the_same_subnet_past_the_ttl(store: MemoryStore) -> None:
    m = manager(store)
    lease = m.acquire(ip(1), "host-gw")
    for _ in range(5):
        store.advance(TTL * 0.6)
        m.renew()
    assert stored(store, lease.subnet).lease == m.lease_id
    assert m.lease == lease


def test_a_restarted_node_gets_its_previous_subnet_back(store: MemoryStore, tmp_path: Path) -> None:
    old = manager(store, tmp_path, seed=1)
    lease = old.acquire(ip(1), "vxlan", 1, MAC)
    old.close()  # never revokes: the key stays while the old lease lives
    assert stored(store, lease.subnet).lease == old.lease_id
    new = manager(store, tmp_path, seed=2)
    again = new.acquire(ip(1), "vxlan", 1, "0a:58:0a:f4:00:02", previous=load_previous(tmp_path))
    assert again.subnet == lease.subnet
    kv = stored(store, lease.subnet)
    assert kv.lease == new.lease_id != old.lease_id
    assert json.loads(kv.value)["BackendData"]["VtepMAC"] == "0a:58:0a:f4:00:02"


def test_a_restart_after_the_ttl_also_gets_the_previous_subnet(store: MemoryStore, tmp_path: Path) -> None:
    lease = manager(store, tmp_path, seed=1).acquire(ip(1), "host-gw")
    store.advance(TTL + 1)
    assert (
        manager(store, tmp_path, seed=2).acquire(ip(1), "host-gw", previous=load_previous(tmp_path)) == lease
    )


def test_without_a_state_dir_the_lease_is_found_by_public_ip(store: MemoryStore) -> None:
    lease = manager(store, seed=1).acquire(ip(1), "host-gw")
    assert manager(store, seed=2).acquire(ip(1), "host-gw").subnet == lease.subnet


def test_a_lease_that_expired_while_paused_is_taken_again(store: MemoryStore) -> None:
    m = manager(store)
    lease = m.acquire(ip(1), "host-gw")
    old_id = m.lease_id
    store.advance(TTL + 5)  # the process was stopped longer than the TTL
    assert store.get(key_of(lease.subnet)) is None
    m.renew()
    assert stored(store, lease.subnet).lease == m.lease_id != old_id
    assert m.lease == lease


def test_renewal_restores_a_lease_key_deleted_by_hand(store: MemoryStore) -> None:
    m = manager(store)
    lease = m.acquire(ip(1), "host-gw")
    store.delete(key_of(lease.subnet))
    m.renew()
    assert stored(store, lease.subnet).value == keyspace.encode_lease(lease)


def test_a_subnet_taken_by_another_node_meanwhile_is_lost(store: MemoryStore) -> None:
    m = manager(store, config=SMALL)
    lease = m.acquire(ip(1), "host-gw")
    store.advance(TTL + 5)
    manager(store, config=SMALL).acquire(ip(2), "host-gw", previous=lease.subnet)
    with pytest.raises(SubnetLost, match=r"subnet 10\.244\.\d\.0/24 is now leased by 10\.250\.0\.2"):
        m.renew()


def test_the_keepalive_thread_renews_and_reports_a_lost_subnet(store: MemoryStore) -> None:
    lost: list[SubnetLost] = []
    m = LeaseManager(store, SMALL, P, ttl=1, rng=random.Random(1), on_lost=lost.append)
    lease = m.acquire(ip(1), "host-gw")
    m.run_keepalive()
    try:
        store.delete(key_of(lease.subnet))
        wait_for(lambda: store.get(key_of(lease.subnet)) is not None, what="the keepalive to restore the key")
        store.advance(5)  # expire our lease, then let another node take the subnet
        manager(store, config=SMALL).acquire(ip(2), "host-gw", previous=lease.subnet)
        wait_for(lambda: lost, what="on_lost")
        assert "now leased by 10.250.0.2" in str(lost[0])
    finally:
        m.close()


def test_a_bad_ttl_is_refused(store: MemoryStore) -> None:
    with pytest.raises(InvalidArgument, match=r"invalid --lease-ttl 0: must be at least 1 second"):
        LeaseManager(store, CONFIG, P, ttl=0)


# -- the watcher ------------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.calls: list[dict[IPv4Network, SubnetLease]] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, leases: dict[IPv4Network, SubnetLease]) -> None:
        self.calls.append(leases)
        self.gate.wait(10)

    @property
    def last(self) -> dict[IPv4Network, SubnetLease]:
        return self.calls[-1] if self.calls else {}


def lease_at(n: int) -> SubnetLease:
    return SubnetLease(IPv4Network(f"10.244.{n}.0/24"), ip(n), "vxlan", 1, f"0a:58:0a:f4:00:{n:02x}")


def put(store: MemoryStore, lease: SubnetLease) -> None:
    store.put(key_of(lease.subnet), keyspace.encode_lease(lease))


def test_watcher_hands_over_the_full_set_after_every_change(store: MemoryStore) -> None:
    put(store, lease_at(1))
    rec = Recorder()
    w = LeaseWatcher(store, P, rec)
    try:
        assert w.wait_synced(5)
        assert rec.calls[0] == {lease_at(1).subnet: lease_at(1)}
        put(store, lease_at(2))
        wait_for(lambda: len(rec.last) == 2, what="the second lease")
        store.delete(key_of(lease_at(1).subnet))
        wait_for(lambda: rec.last == {lease_at(2).subnet: lease_at(2)}, what="the deletion")
        n = len(rec.calls)
        put(store, lease_at(2))  # rewritten unchanged: nothing new to apply
        store.put(key_of(lease_at(2).subnet), b"garbage")  # unreadable: nothing can be routed to it
        wait_for(lambda: rec.last == {}, what="the unreadable lease to drop out")
        assert len(rec.calls) == n + 1
        assert w.leases == {}
    finally:
        w.close()


def test_watcher_ignores_keys_that_are_not_subnets(store: MemoryStore) -> None:
    store.put(keyspace.subnets_prefix(P) + "junk", b"{}")
    put(store, lease_at(3))
    rec = Recorder()
    w = LeaseWatcher(store, P, rec)
    try:
        assert w.wait_synced(5)
        assert rec.last == {lease_at(3).subnet: lease_at(3)}
    finally:
        w.close()


def test_watcher_sees_leases_expire(store: MemoryStore) -> None:
    m = manager(store)
    lease = m.acquire(ip(1), "host-gw")
    rec = Recorder()
    w = LeaseWatcher(store, P, rec)
    try:
        wait_for(lambda: rec.last == {lease.subnet: lease}, what="the lease")
        store.advance(TTL)
        wait_for(lambda: rec.last == {}, what="the expiry")
    finally:
        w.close()


def test_watcher_lists_again_after_a_compaction(store: MemoryStore, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="netplugin.subnet.leases")
    put(store, lease_at(1))
    rec = Recorder()
    rec.gate.clear()  # hold the watcher inside its first on_change
    w = LeaseWatcher(store, P, rec)
    try:
        wait_for(lambda: rec.calls, what="the first list")
        put(store, lease_at(2))
        store.delete(key_of(lease_at(1).subnet))
        rev = store.put(key_of(lease_at(3).subnet), keyspace.encode_lease(lease_at(3)))
        store.compact(rev)  # the events the watcher has not read yet are gone
        rec.gate.set()
        want = {lease_at(2).subnet: lease_at(2), lease_at(3).subnet: lease_at(3)}
        wait_for(lambda: rec.last == want, what="the re-list")
        assert "compacted; listing again" in caplog.text
    finally:
        w.close()


def test_watcher_survives_a_failing_callback(store: MemoryStore) -> None:
    seen: list[int] = []

    def flaky(leases: dict[IPv4Network, SubnetLease]) -> None:
        seen.append(len(leases))
        if len(seen) == 1:
            raise RuntimeError("netlink hiccup")

    w = LeaseWatcher(store, P, flaky)
    try:
        wait_for(lambda: seen, what="the first call")
        put(store, lease_at(4))
        wait_for(lambda: seen[-1] == 1, what="the next change")
    finally:
        w.close()
