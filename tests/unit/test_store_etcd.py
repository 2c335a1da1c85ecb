"""EtcdStore without a server, and the etcd launcher's own promises."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from agent.errors import InvalidArgument, Unavailable
from controller.store.etcd import EtcdStore
from tests.support.etcd import EtcdServer


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_etcd_is_unavailable_fast_with_one_line() -> None:
    store = EtcdStore([f"127.0.0.1:{_closed_port()}"], timeout=2.0)
    try:
        for call in (
            lambda: store.get("/k"),
            lambda: store.put("/k", b""),
            lambda: store.watch_prefix("/", 0),
        ):
            started = time.monotonic()
            with pytest.raises(Unavailable) as caught:
                call()
            assert time.monotonic() - started < 2.0
            assert "\n" not in str(caught.value)
    finally:
        store.close()


@pytest.mark.parametrize("endpoints", [[], ["https://127.0.0.1:2379"], ["localhost:1", "localhost:2"]])
def test_bad_endpoints_are_refused(endpoints: list[str]) -> None:
    with pytest.raises(InvalidArgument):
        EtcdStore(endpoints)


def test_server_stops_its_own_pid_and_removes_its_data_dir(tmp_path: Path) -> None:
    with EtcdServer(tmp_path) as server:
        pid = server.pid
        assert pid is not None and server.name.startswith("shoaltest-")
        assert server.data_dir.is_dir()
        assert server.endpoint.startswith("127.0.0.1:")
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # already reaped
    assert not server.data_dir.exists()


def test_a_watch_raises_unavailable_when_etcd_goes_away(tmp_path: Path) -> None:
    with EtcdServer(tmp_path) as server:
        store = EtcdStore([server.endpoint])
        watch = store.watch_prefix("/shoaltest/", 0)
        server.stop()
        started = time.monotonic()
        with pytest.raises(Unavailable):
            next(watch)
        assert time.monotonic() - started < 5.0
        store.close()
