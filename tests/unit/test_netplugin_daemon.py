"""The daemon's start-up steps that need no kernel: waiting for the config, retrying an absent etcd.

tests/integration/test_netplugin_daemon.py runs the whole daemon in a namespace lab.
"""

from __future__ import annotations

import threading
from ipaddress import IPv4Address, IPv4Network

import pytest

from agent.errors import InvalidArgument, Unavailable
from controller.store.memory import MemoryStore
from netplugin.config import NetworkConfig
from netplugin.daemon import Netplugin, NetpluginConfig, wait_for_config
from netplugin.subnet import keyspace
from tests.support.agent import wait_for

P = "/test/network"


def test_an_existing_config_is_read_and_validated() -> None:
    store = MemoryStore()
    store.put(keyspace.config_key(P), b'{"Network": "10.5.0.0/16", "Backend": {"Type": "host-gw"}}')
    config = wait_for_config(store, P, threading.Event())
    assert config is not None
    assert (config.network, config.backend.type) == (IPv4Network("10.5.0.0/16"), "host-gw")


def test_an_invalid_config_is_refused_at_once() -> None:
    store = MemoryStore()
    store.put(keyspace.config_key(P), b'{"Network": "10.5.0.0/16", "Backend": {"Type": "udp"}}')
    with pytest.raises(InvalidArgument, match=r"invalid Backend\.Type 'udp'"):
        wait_for_config(store, P, threading.Event())


def test_the_daemon_waits_for_the_config_to_appear(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStore()
    got: list[NetworkConfig | None] = []
    waiter = threading.Thread(
        target=lambda: got.append(wait_for_config(store, P, threading.Event(), poll=0.01))
    )
    with caplog.at_level("INFO", logger="netplugin.daemon"):
        waiter.start()
        wait_for(lambda: "waiting for the network config at /test/network/config" in caplog.text)
        store.put(keyspace.config_key(P), b'{"Network": "10.6.0.0/16"}')
        waiter.join(10)
    assert [c.network if c else None for c in got] == [IPv4Network("10.6.0.0/16")]


def test_stopping_ends_the_wait() -> None:
    stop = threading.Event()
    stop.set()
    assert wait_for_config(MemoryStore(), P, stop) is None


class Flaky:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise Unavailable("etcd 127.0.0.1:1 get failed: UNAVAILABLE")
        return "leased"


def plugin(stop: threading.Event) -> Netplugin:
    cfg = NetpluginConfig(etcd_endpoints=("127.0.0.1:1",), public_ip=IPv4Address("10.250.0.1"))
    return Netplugin(cfg, MemoryStore(), stop)


def test_start_up_steps_retry_while_etcd_is_unreachable() -> None:
    step = Flaky(failures=1)
    assert plugin(threading.Event())._retrying("leasing", step) == "leased"
    assert step.calls == 2


def test_a_stop_ends_the_retries() -> None:
    stop = threading.Event()
    stop.set()
    step = Flaky(failures=100)
    with pytest.raises(Unavailable):
        plugin(stop)._retrying("leasing", step)
    assert step.calls == 1
