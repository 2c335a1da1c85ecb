"""The Store contract suite once more, through InstrumentedStore, on the fake and on real etcd:
the wrapper must change nothing but the metrics."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from prometheus_client import CollectorRegistry

from controller.store.base import Store
from controller.store.etcd import EtcdStore
from controller.store.instrumented import InstrumentedStore
from controller.store.memory import MemoryStore
from tests.contract import test_store_contract as suite
from tests.contract.test_store_contract import Harness, ManualClock

# The suite's tests and its etcd fixture run here again, against the `h` below.
globals().update({k: v for k, v in vars(suite).items() if k.startswith("test_") or k == "etcd_endpoint"})


@pytest.fixture(params=["memory", "etcd"])
def h(request: pytest.FixtureRequest) -> Iterator[Harness]:
    prefix = f"/shoaltest-{uuid.uuid4().hex}/"
    inner: Store
    pass_time: Callable[[float], None]
    if request.param == "memory":
        mem = MemoryStore(clock=ManualClock())
        inner, pass_time = mem, mem.advance
    else:
        inner, pass_time = EtcdStore([request.getfixturevalue("etcd_endpoint")]), time.sleep
    store = InstrumentedStore(inner, CollectorRegistry())
    try:
        yield Harness(store, prefix, pass_time)
    finally:
        store.close()
