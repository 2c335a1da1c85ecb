"""The lab's etcd relay (deploy/lab/relay.py), run in this process's own netns (its netns-less mode;
test_lab_partition.py runs it across a real lab's namespaces): a real etcd client works through it,
bytes pass intact both ways (far more than its buffers hold), whenever one side ends the other is
closed, even when that one stopped reading; and only a lab host itself reaches the control address,
never a container behind it."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import socket
import sys
import termios
import threading
import uuid
from collections.abc import Iterator
from ipaddress import IPv4Network
from pathlib import Path

from controller.store.etcd import EtcdStore
from controller.store.etcd_server import EtcdServer
from deploy.lab import netns
from deploy.lab.launch import free_ports
from deploy.lab.relay import NodeRoute, Relay, RelayConfig, socket_in
from tests.support.agent import wait_for


@contextlib.contextmanager
def relay_to(port: int, close_timeout: float = 5.0) -> Iterator[tuple[Relay, int]]:
    """A relay (event loop on a thread) whose one node port leads to 127.0.0.1:`port`."""
    (listen,) = free_ports(1)
    routes = (NodeRoute(None, listen),)
    relay = Relay(RelayConfig(("127.0.0.1", port), None, "127.0.0.1", routes, close_timeout=close_timeout))
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


def test_a_client_that_stopped_reading_is_reset_once_its_connection_ends() -> None:
    """Like a SIGSTOPped agent: the relay holds data for it that it never reads; when the connection
    ends (here the client half-closes), the relay must not wait forever to flush: it resets."""

    def flood(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            with contextlib.suppress(OSError):
                conn.sendall(os.urandom(8 * 1024 * 1024))  # more than every buffer on the way

    with tcp_server(flood) as upstream, relay_to(upstream, close_timeout=0.5) as (_, port):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            wait_for(lambda: unread(client) > 0, timeout=10, what="data waiting for the client")
            client.shutdown(socket.SHUT_WR)
            wait_for(
                lambda: client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == errno.ECONNRESET,
                timeout=10,
                what="the relay resetting the client's connection",
            )


def unread(sock: socket.socket) -> int:
    """Bytes waiting in the socket's receive queue (FIONREAD)."""
    return int.from_bytes(fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"), sys.byteorder)


def test_the_client_is_closed_when_the_far_end_cannot_be_reached() -> None:
    (nobody,) = free_ports(1)
    with relay_to(nobody) as (_, port):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            assert client.recv(10) == b""


def reaches(ns: str, address: str, port: int) -> bool:
    """Whether a TCP connection made from netns `ns` gets through (a dropped SYN: not within 1 s)."""
    with socket_in(ns) as sock:
        sock.settimeout(1)
        try:
            sock.connect((address, port))
        except OSError:
            return False
        return True


def test_only_the_host_itself_reaches_the_control_address() -> None:
    """The relay's control listener hands connections to etcd unauthenticated: a container behind a
    lab host (routed and masqueraded by it, accepted by a netplugin-style FORWARD rule inserted
    after the lab set the host up) must not reach it; the host's own sockets (the relay's) must."""
    prefix = f"rf{uuid.uuid4().hex[:5]}"
    switch, host, ctr = f"{prefix}-sw", f"{prefix}-n1", f"{prefix}-c1"
    underlay = IPv4Network("10.250.0.0/24")
    made: list[str] = []
    try:
        for name in (switch, host, ctr):
            netns.add(name)
            made.append(name)
        netns.make_switch(switch)
        control = str(netns.add_control_address(switch, underlay))
        netns.plug_host(switch, host, "p1", netns.host_address(underlay, 1), underlay)
        # A container on the host, as the netplugin wires one: routed, masqueraded, FORWARD-accepted.
        netns.in_ns(host, ["ip", "link", "add", "c1", "type", "veth", "peer", "name", "eth0", "netns", ctr])
        netns.in_ns(host, ["ip", "addr", "add", "10.99.1.1/24", "dev", "c1"])
        netns.in_ns(host, ["ip", "link", "set", "c1", "up"])
        netns.in_ns(ctr, ["ip", "addr", "add", "10.99.1.2/24", "dev", "eth0"])
        netns.in_ns(ctr, ["ip", "link", "set", "eth0", "up"])
        netns.in_ns(ctr, ["ip", "route", "add", "default", "via", "10.99.1.1"])
        netns.in_ns(host, ["iptables", "-I", "FORWARD", "-s", "10.99.1.0/24", "-j", "ACCEPT"])
        netns.in_ns(
            host, ["iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "10.99.1.0/24", "-j", "MASQUERADE"]
        )
        with socket_in(switch) as listener:
            listener.setblocking(True)
            listener.bind((control, 0))
            listener.listen(8)
            port = int(listener.getsockname()[1])
            assert reaches(host, control, port)
            assert not reaches(ctr, control, port)
            # The fence is what stops it: without it the container gets through.
            fence = ["FORWARD", "-d", f"{control}/32", "-j", "DROP"]
            netns.in_ns(host, ["iptables", "-t", "mangle", "-D", *fence])
            assert reaches(ctr, control, port)
    finally:
        for name in reversed(made):
            netns.delete(name)
