"""InstrumentedStore: any Store, with the latency of each request in a Prometheus histogram.

Every daemon that talks to etcd (controller, agent, netplugin) wraps its store in one, so
`shoal_etcd_request_duration_seconds{operation}` means the same everywhere. Watches are not timed:
they live as long as the daemon. Failed requests are observed too (a timeout is a latency).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TypeVar

from prometheus_client import CollectorRegistry, Histogram

from controller.store.base import Compare, KeyValue, Lease, Op, Store, TxnResult, Watch

ETCD_REQUEST_SECONDS = "shoal_etcd_request_duration_seconds"
OPERATIONS = ("get", "list", "put", "delete", "txn", "grant_lease", "keepalive", "revoke", "compact")
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""etcd answers a loopback request in about a millisecond; a second means it is in trouble."""

_lock = threading.Lock()
_histograms: weakref.WeakKeyDictionary[CollectorRegistry, Histogram] = weakref.WeakKeyDictionary()

T = TypeVar("T")


def etcd_request_histogram(registry: CollectorRegistry) -> Histogram:
    """The registry's etcd latency histogram, registered on first use: stores sharing a registry
    (the agent's own store and its network's) share the histogram instead of colliding."""
    with _lock:
        histogram = _histograms.get(registry)
        if histogram is None:
            histogram = Histogram(
                ETCD_REQUEST_SECONDS,
                "Latency of etcd requests by operation (watches excluded).",
                ["operation"],
                buckets=BUCKETS,
                registry=registry,
            )
            for operation in OPERATIONS:  # every series from the start, so rate() works at once
                histogram.labels(operation)
            _histograms[registry] = histogram
        return histogram


class InstrumentedStore:
    """Implements the Store protocol by delegating to `store`."""

    def __init__(self, store: Store, registry: CollectorRegistry) -> None:
        self.inner = store
        histogram = etcd_request_histogram(registry)
        self._observe = {operation: histogram.labels(operation).observe for operation in OPERATIONS}

    def _timed(self, operation: str, call: Callable[[], T]) -> T:
        started = time.perf_counter()
        try:
            return call()
        finally:
            self._observe[operation](time.perf_counter() - started)

    def get(self, key: str) -> KeyValue | None:
        return self._timed("get", lambda: self.inner.get(key))

    def list(self, prefix: str) -> tuple[list[KeyValue], int]:
        return self._timed("list", lambda: self.inner.list(prefix))

    def put(self, key: str, value: bytes, lease: int | None = None) -> int:
        return self._timed("put", lambda: self.inner.put(key, value, lease))

    def delete(self, key: str) -> bool:
        return self._timed("delete", lambda: self.inner.delete(key))

    def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        return self._timed("txn", lambda: self.inner.txn(compares, success, failure))

    def grant_lease(self, ttl: int) -> Lease:
        return self._timed("grant_lease", lambda: self.inner.grant_lease(ttl))

    def keepalive(self, lease_id: int) -> int:
        return self._timed("keepalive", lambda: self.inner.keepalive(lease_id))

    def keepalive_many(self, lease_ids: Sequence[int]) -> dict[int, int]:
        # One request on the wire (a keepalive stream round), so one "keepalive" observation.
        return self._timed("keepalive", lambda: self.inner.keepalive_many(lease_ids))

    def revoke(self, lease_id: int) -> None:
        self._timed("revoke", lambda: self.inner.revoke(lease_id))

    def watch_prefix(self, prefix: str, start_revision: int) -> Watch:
        return self.inner.watch_prefix(prefix, start_revision)

    def compact(self, revision: int) -> None:
        self._timed("compact", lambda: self.inner.compact(revision))

    def close(self) -> None:
        self.inner.close()
