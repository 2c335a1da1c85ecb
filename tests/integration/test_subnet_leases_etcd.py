"""Subnet leases on a real etcd 3.4: the behaviours tests/unit/test_subnet_leases.py checks on the
in-memory store, with etcd's own TTLs, transactions and watches (time passes for real here)."""

from __future__ import annotations

import json
import random
import threading
import uuid
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from controller.store.etcd import EtcdStore
from netplugin.config import NetworkConfig, validate_config
from netplugin.subnet import keyspace
from netplugin.subnet.leases import LeaseManager, LeaseWatcher, SubnetLease, SubnetLost, load_previous
from tests.support.agent import wait_for
from tests.support.etcd import EtcdServer

SMALL = validate_config({"Network": "10.244.0.0/22"})  # three subnets
TTL = 2  # etcd expires leases about every 0.5 s, so a key is gone within ~TTL + 1 s
WAIT = TTL + 8.0


def ip(n: int) -> IPv4Address:
    return IPv4Address(f"10.250.0.{n}")


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with EtcdServer(Path(tmp_path_factory.mktemp("etcd"))) as server:
        yield server.endpoint


@pytest.fixture
def prefix() -> str:
    return f"/shoaltest-{uuid.uuid4().hex[:12]}/network"


@pytest.fixture
def store(endpoint: str) -> Iterator[EtcdStore]:
    s = EtcdStore([endpoint])
    yield s
    s.close()


class Nodes:
    """Managers with their own etcd clients, closed at the end of the test."""

    def __init__(self, endpoint: str, prefix: str) -> None:
        self.endpoint, self.prefix = endpoint, prefix
        self.stores: list[EtcdStore] = []
        self.managers: list[LeaseManager] = []

    def manager(
        self, config: NetworkConfig = SMALL, state_dir: Path | None = None, seed: int = 1
    ) -> LeaseManager:
        store = EtcdStore([self.endpoint])
        self.stores.append(store)
        m = LeaseManager(store, config, self.prefix, TTL, state_dir=state_dir, rng=random.Random(seed))
        self.managers.append(m)
        return m

    def close(self) -> None:
        for m in self.managers:
            m.close()
        for s in self.stores:
            s.close()


@pytest.fixture
def nodes(endpoint: str, prefix: str) -> Iterator[Nodes]:
    n = Nodes(endpoint, prefix)
    yield n
    n.close()


def key(prefix: str, subnet: IPv4Network) -> str:
    return keyspace.subnet_key(prefix, subnet)


def test_acquire_writes_flannels_lease_on_a_ttl_lease(nodes: Nodes, store: EtcdStore, tmp_path: Path) -> None:
    m = nodes.manager(state_dir=tmp_path)
    lease = m.acquire(ip(1), "vxlan", 1, "0a:58:0a:f4:00:01")
    kv = store.get(key(nodes.prefix, lease.subnet))
    assert kv is not None and kv.lease == m.lease_id != 0
    assert json.loads(kv.value) == {
        "PublicIP": "10.250.0.1",
        "BackendType": "vxlan",
        "BackendData": {"VNI": 1, "VtepMAC": "0a:58:0a:f4:00:01"},
    }
    assert load_previous(tmp_path) == lease.subnet


def test_nodes_racing_on_etcd_never_share_a_subnet(nodes: Nodes) -> None:
    managers = [nodes.manager(seed=3) for _ in range(3)]  # same seed: same first pick
    got: dict[int, SubnetLease] = {}
    start = threading.Barrier(3, timeout=10)

    def node(n: int) -> None:
        start.wait()
        got[n] = managers[n].acquire(ip(n + 1), "host-gw")

    threads = [threading.Thread(target=node, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert sorted(got) == [0, 1, 2]
    assert len({le.subnet for le in got.values()}) == 3


def test_ttl_expiry_frees_the_subnet(nodes: Nodes, store: EtcdStore) -> None:
    first = nodes.manager().acquire(ip(1), "host-gw")
    wait_for(lambda: store.get(key(nodes.prefix, first.subnet)) is None, WAIT, what="the lease to expire")
    assert nodes.manager().acquire(ip(2), "host-gw", previous=first.subnet).subnet == first.subnet


def test_keepalive_holds_the_lease_past_its_ttl(nodes: Nodes, store: EtcdStore) -> None:
    kept = nodes.manager()
    kept_lease = kept.acquire(ip(1), "host-gw")
    kept.run_keepalive()
    # A lease taken after ours and never renewed: once it is gone, more than a TTL has passed.
    witness = nodes.manager().acquire(ip(2), "host-gw")
    wait_for(lambda: store.get(key(nodes.prefix, witness.subnet)) is None, WAIT, what="the witness to expire")
    kv = store.get(key(nodes.prefix, kept_lease.subnet))
    assert kv is not None and kv.lease == kept.lease_id


def test_a_restarted_node_takes_its_subnet_back_at_once(
    nodes: Nodes, store: EtcdStore, tmp_path: Path
) -> None:
    old = nodes.manager(state_dir=tmp_path, seed=1)
    lease = old.acquire(ip(1), "host-gw")
    old.close()
    new = nodes.manager(state_dir=tmp_path, seed=2)
    assert new.acquire(ip(1), "host-gw", previous=load_previous(tmp_path)) == lease
    kv = store.get(key(nodes.prefix, lease.subnet))
    assert kv is not None and kv.lease == new.lease_id != old.lease_id


def test_a_lease_that_expired_while_paused_is_taken_again(nodes: Nodes, store: EtcdStore) -> None:
    m = nodes.manager()
    lease = m.acquire(ip(1), "host-gw")
    old_id = m.lease_id
    wait_for(lambda: store.get(key(nodes.prefix, lease.subnet)) is None, WAIT, what="the lease to expire")
    m.renew()
    kv = store.get(key(nodes.prefix, lease.subnet))
    assert kv is not None and kv.lease == m.lease_id != old_id


def test_a_subnet_taken_meanwhile_is_reported_lost(nodes: Nodes, store: EtcdStore) -> None:
    m = nodes.manager()
    lease = m.acquire(ip(1), "host-gw")
    wait_for(lambda: store.get(key(nodes.prefix, lease.subnet)) is None, WAIT, what="the lease to expire")
    nodes.manager().acquire(ip(2), "host-gw", previous=lease.subnet)
    with pytest.raises(SubnetLost, match=r"now leased by 10\.250\.0\.2"):
        m.renew()


def test_watcher_follows_leases_on_etcd(nodes: Nodes, store: EtcdStore) -> None:
    calls: list[dict[IPv4Network, SubnetLease]] = []
    first = nodes.manager().acquire(ip(1), "host-gw")
    w = LeaseWatcher(store, nodes.prefix, calls.append)
    try:
        assert w.wait_synced(WAIT)
        assert calls[0] == {first.subnet: first}
        kept = nodes.manager()
        second = kept.acquire(ip(2), "host-gw")
        kept.run_keepalive()
        wait_for(
            lambda: calls[-1] == {first.subnet: first, second.subnet: second}, WAIT, what="the new lease"
        )
        wait_for(lambda: calls[-1] == {second.subnet: second}, WAIT, what="the first lease to expire")
        store.delete(key(nodes.prefix, second.subnet))
        wait_for(lambda: calls[-1] == {}, WAIT, what="the deletion")
        wait_for(lambda: calls[-1] == {second.subnet: second}, WAIT, what="the keepalive to restore it")
    finally:
        w.close()
