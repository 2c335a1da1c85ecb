"""InstrumentedStore: every request but a watch is one observation under its operation."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from agent.errors import NotFound
from controller.store.base import Put, absent
from controller.store.instrumented import OPERATIONS, InstrumentedStore, etcd_request_histogram
from controller.store.memory import MemoryStore

NAME = "shoal_etcd_request_duration_seconds"


def counts(registry: CollectorRegistry) -> dict[str, float]:
    return {op: registry.get_sample_value(f"{NAME}_count", {"operation": op}) or 0.0 for op in OPERATIONS}


def test_each_operation_is_observed_once_under_its_name_and_watches_are_not() -> None:
    registry = CollectorRegistry()
    store = InstrumentedStore(MemoryStore(), registry)
    assert set(counts(registry).values()) == {0.0}  # every series exists from the start
    lease = store.grant_lease(5)
    store.put("/k/a", b"1", lease.id)
    store.get("/k/a")
    kvs, revision = store.list("/k/")
    store.txn([absent("/k/b")], [Put("/k/b", b"2")])
    store.keepalive(lease.id)
    store.keepalive_many([lease.id])
    with store.watch_prefix("/k/", revision + 1):
        pass
    store.delete("/k/b")
    store.compact(revision)
    store.revoke(lease.id)
    assert [kv.key for kv in kvs] == ["/k/a"]
    assert counts(registry) == {
        "get": 1,
        "list": 1,
        "put": 1,
        "delete": 1,
        "txn": 1,
        "grant_lease": 1,
        "keepalive": 2,  # keepalive_many is one request too
        "revoke": 1,
        "compact": 1,
    }
    assert (registry.get_sample_value(f"{NAME}_sum", {"operation": "txn"}) or 0) > 0
    store.close()


def test_a_failed_request_is_observed_too() -> None:
    registry = CollectorRegistry()
    store = InstrumentedStore(MemoryStore(), registry)
    with pytest.raises(NotFound):
        store.keepalive(12345)
    assert counts(registry)["keepalive"] == 1


def test_stores_sharing_a_registry_share_the_histogram() -> None:
    registry = CollectorRegistry()
    first = InstrumentedStore(MemoryStore(), registry)
    second = InstrumentedStore(MemoryStore(), registry)
    first.get("/x")
    second.get("/x")
    assert counts(registry)["get"] == 2
    assert etcd_request_histogram(registry) is etcd_request_histogram(registry)
    other = CollectorRegistry()
    assert etcd_request_histogram(other) is not etcd_request_histogram(registry)
