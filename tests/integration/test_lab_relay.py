"""The lab's etcd relay (deploy/lab/relay.py), run in this process's own netns (its netns-less mode;
test_lab_partition.py runs it across a real lab's namespaces): a real etcd client works through it,
bytes pass intact both ways with bounded buffers, and whenever one side ends the other is closed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

from controller.store.etcd import EtcdStore
from controller.store.etcd_server import EtcdServer
from deploy.lab.launch import free_ports
from deploy.lab.relay import NodeRoute, Relay, RelayConfig


@contextlib.contextmanager
def relay_to(port: int) -> Iterator[tuple[Relay, int]]:
    """A relay (event loop on a thread) whose one node port leads to 127.0.0.1:`port`."""
    (listen,) = free_ports(1)
    relay = Relay(RelayConfig(("127.0.0.1", port), None, "127.0.0.1", (NodeRoute(None, listen),)))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="relay-loop", daemon=True)
    thread.start()

    async def stop() -> None:
        relay.close()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    try:
        asyncio.run_coroutine_threadsafe(relay.start(), loop).result(10)
        yield relay, listen
    finally:
        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@contextlib.contextmanager
def tcp_server(handle: object) -> Iterator[int]:
    """A loopback server calling handle(conn) on a thread for each connection."""
    assert callable(handle)
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.2)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(srv.getsockname()[1])
    finally:
        done.set()
        thread.join(5)
        srv.close()


def echo(conn: socket.socket) -> None:
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)


def test_an_etcd_client_works_through_the_relay(tmp_path: Path) -> None:
    with EtcdServer(tmp_path) as etcd, relay_to(etcd.client_port) as (relay, port):
        assert relay.control_port > 0
        store = EtcdStore([f"127.0.0.1:{port}"], timeout=5)
        try:
            revision = store.put("/relay/a", b"1")
            with store.watch_prefix("/relay/", revision + 1) as watch:
                store.put("/relay/b", b"2")
                (event,) = next(watch)
                assert (event.kv.key, event.kv.value) == ("/relay/b", b"2")
            lease = store.grant_lease(5)
            assert store.keepalive(lease.id) > 0
            kv = store.get("/relay/a")
            assert kv is not None and kv.value == b"1"
        finally:
            store.close()


def test_bytes_pass_intact_both_ways() -> None:
    payload = os.urandom(4 * 1024 * 1024)  # far more than any buffer the relay keeps
    with tcp_server(echo) as upstream, relay_to(upstream) as (_, port):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            received = bytearray()

            def read() -> None:
                while len(received) < len(payload) and (data := client.recv(65536)):
                    received.extend(data)

            reader = threading.Thread(target=read)
            reader.start()
            client.sendall(payload)
            reader.join(30)
            assert bytes(received) == payload


def test_the_client_is_closed_when_the_server_side_ends() -> None:
    def greet_and_close(conn: socket.socket) -> None:
        with conn:
            conn.sendall(b"bye")

    with tcp_server(greet_and_close) as upstream, relay_to(upstream) as (_, port):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            data = b""
            while chunk := client.recv(10):
                data += chunk
            assert data == b"bye"  # flushed first, then the end


def test_the_client_is_closed_when_the_far_end_cannot_be_reached() -> None:
    (nobody,) = free_ports(1)
    with relay_to(nobody) as (_, port):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            assert client.recv(10) == b""
