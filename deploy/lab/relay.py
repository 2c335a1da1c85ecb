"""The lab's control path through the underlay, so that a partitioned host loses etcd too.

Every lab daemon runs in the root netns, where etcd listens on loopback: a host's agent and
netplugin would reach etcd whatever happens to the host's underlay link. This relay (one process for
the whole lab) routes their etcd traffic over that link instead:

    agent/netplugin of node i ──> 127.0.0.1:<Pi> (root netns, a listener per node)
      ──> a TCP connection whose socket was created INSIDE node i's netns, to <.254>:<Q>
          (a listener created inside the switch netns, on the switch bridge's control address)
      ──> etcd on 127.0.0.1 (root netns)

A socket keeps the network namespace it was created in, so only socket creation needs setns(),
done on a short-lived helper thread (as netplugin/dataplane/links.py does for netlink sockets).
Setting the host's switch port down then stalls its connections: TCP keepalive and
TCP_USER_TIMEOUT on both underlay ends notice within seconds, and the relay closes both sides, so
the clients see a closed connection (not a silent stall) and reconnect; while the link is down,
new connections fail after CONNECT_TIMEOUT. Buffers are bounded: a side is read only once the
other side's transport has drained below its high-water mark. A connection that ends is closed
within CLOSE_TIMEOUT even when its peer stopped reading (a SIGSTOPped agent): then it is reset.

Run as `python -m deploy.lab.relay --etcd 127.0.0.1:2379 --switch NS --control 10.250.0.254
--node NS1=PORT1 --node NS2=PORT2 ...` (see `shoal lab up`; without --switch, and with `--node PORT`,
the relay's own netns is used); logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import struct
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from agent.errors import ShoalError, invalid

log = logging.getLogger("shoal.lab.relay")

NETNS_DIR = Path("/run/netns")
CHUNK = 64 * 1024
CONNECT_TIMEOUT = 2.0
"""A connection through a cut link fails after this long; the client's own reconnect retries."""
USER_TIMEOUT_MS = 3000
"""TCP_USER_TIMEOUT: data left unacknowledged this long aborts the connection (a cut link)."""
CLOSE_TIMEOUT = 5.0
"""How long an ended connection may take to flush what it still holds before it is reset."""
KEEPALIVE = (1, 1, 2)
"""TCP keepalive idle, interval (s) and probes: an idle connection over a cut link dies in ~3 s."""
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class NodeRoute:
    netns: str | None
    """The host's netns (a name under /run/netns); None: the relay's own (tests)."""
    port: int
    """The loopback port (root netns) that host's daemons use as their etcd endpoint."""


@dataclass(frozen=True)
class RelayConfig:
    etcd: tuple[str, int]
    switch: str | None
    """The switch netns, where the control listener lives; None: the relay's own (tests)."""
    control: str
    """The switch bridge's control address (the underlay's .254)."""
    nodes: tuple[NodeRoute, ...]
    connect_timeout: float = CONNECT_TIMEOUT
    close_timeout: float = CLOSE_TIMEOUT


def _host_port(flag: str, value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise invalid(flag, value, "must be ADDRESS:PORT with a port of 1-65535")
    return _loopback(flag, value, host), int(port)


def _loopback(flag: str, value: str, host: str) -> str:
    try:
        if IPv4Address(host).is_loopback:
            return host
    except ValueError:
        pass
    raise invalid(flag, value, "must be a loopback IPv4 address")


def _netns_name(name: str) -> bool:
    return bool(name) and "/" not in name and name not in (".", "..")


def _route(value: str) -> NodeRoute:
    """NETNS=PORT, or PORT alone: the relay's own netns."""
    name, sep, port = value.rpartition("=")
    if (sep and not _netns_name(name)) or not port.isdigit() or not 0 < int(port) < 65536:
        raise invalid("--node", value, "must be NETNS=PORT with a port of 1-65535")
    return NodeRoute(name if sep else None, int(port))


def parse_args(argv: Sequence[str]) -> RelayConfig:
    """The relay's command line, validated (one-line InvalidArgument on bad input)."""
    parser = argparse.ArgumentParser(prog="python -m deploy.lab.relay", description=__doc__)
    parser.add_argument("--etcd", required=True, metavar="ADDRESS:PORT")
    parser.add_argument("--switch", metavar="NETNS")
    parser.add_argument("--control", required=True, metavar="ADDRESS")
    parser.add_argument("--node", action="append", default=[], metavar="NETNS=PORT")
    args = parser.parse_args(list(argv))
    if args.switch is not None and not _netns_name(args.switch):
        raise invalid("--switch", args.switch, "must be a netns name (under /run/netns)")
    try:
        IPv4Address(args.control)
    except ValueError:
        raise invalid("--control", args.control, "must be an IPv4 address") from None
    nodes = tuple(_route(v) for v in args.node)
    if not nodes:
        raise invalid("--node", "", "at least one is needed")
    ports = [n.port for n in nodes]
    if len(set(ports)) != len(ports):
        raise invalid("--node", " ".join(args.node), "ports must differ")
    return RelayConfig(_host_port("--etcd", args.etcd), args.switch, args.control, nodes)


def relay_argv(python: str, config: RelayConfig) -> list[str]:
    """The command line that parse_args() reads back as `config`."""
    argv = [python, "-m", "deploy.lab.relay", "--etcd", f"{config.etcd[0]}:{config.etcd[1]}"]
    argv += [] if config.switch is None else ["--switch", config.switch]
    argv += ["--control", config.control]
    for n in config.nodes:
        argv += ["--node", str(n.port) if n.netns is None else f"{n.netns}={n.port}"]
    return argv


# ---- sockets in a namespace ---------------------------------------------------------------


def socket_in(netns: str | None) -> socket.socket:
    """A non-blocking TCP socket created inside netns `netns` (None: our own). It blocks while a
    helper thread enters the netns: from the event loop, call it through asyncio.to_thread."""
    if netns is None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        return sock
    result: list[socket.socket | BaseException] = []

    def enter() -> None:
        # setns() changes only this thread's namespace; the thread ends right after, so nothing
        # else ever runs in the host's netns.
        try:
            fd = os.open(NETNS_DIR / netns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, _CLONE_NEWNET) != 0:
                    raise OSError(
                        ctypes.get_errno(), f"setns into {netns}: {os.strerror(ctypes.get_errno())}"
                    )
                result.append(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            finally:
                os.close(fd)
        except BaseException as exc:  # handed to the caller's thread
            result.append(exc)

    worker = threading.Thread(target=enter, name=f"relay-netns-{netns}")
    worker.start()
    worker.join()
    got = result[0]
    if isinstance(got, BaseException):
        raise got
    got.setblocking(False)
    return got


def underlay_options(sock: socket.socket) -> None:
    """Notice a cut link on an underlay connection: idle (keepalive) or with data in flight."""
    idle, interval, count = KEEPALIVE
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, USER_TIMEOUT_MS)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# ---- the relay ----------------------------------------------------------------------------


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(CHUNK):
        writer.write(data)
        await writer.drain()  # bounded: wait while the other side's buffer is full


def reset(writer: asyncio.StreamWriter) -> None:
    """Drop the connection now, whatever it still holds: RST (SO_LINGER 0), not a FIN queued behind
    data a stopped peer will never read."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def splice(
    what: str,
    a: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    b: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    close_timeout: float = CLOSE_TIMEOUT,
) -> None:
    """Copy both ways until either side ends or fails, then close both: after a failure at once,
    else letting each flush for up to `close_timeout` (a peer may have stopped reading)."""
    tasks = [asyncio.create_task(_pipe(a[0], b[1])), asyncio.create_task(_pipe(b[0], a[1]))]
    failed = False
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if not task.cancelled() and (exc := task.exception()) is not None:
                failed = True
                log.info("%s: closing both sides: %s", what, exc)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for writer in (a[1], b[1]):
            if failed:
                reset(writer)
            else:
                writer.close()
        for writer in (a[1], b[1]):
            try:
                await asyncio.wait_for(writer.wait_closed(), close_timeout)
            except TimeoutError:
                log.info("%s: peer not reading: resetting", what)
                reset(writer)
            except OSError:
                pass


class Relay:
    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self.control_port = 0
        self._servers: list[asyncio.Server] = []

    async def start(self) -> None:
        """Bind every listener (the control one first: node connections go to its port)."""
        control = await asyncio.to_thread(socket_in, self.config.switch)
        control.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        control.bind((self.config.control, 0))
        control.listen(128)
        self.control_port = int(control.getsockname()[1])
        self._servers.append(await asyncio.start_server(self._from_underlay, sock=control))
        where = f"netns {self.config.switch}" if self.config.switch else "our netns"
        log.info("control listener on %s:%d in %s", self.config.control, self.control_port, where)
        for route in self.config.nodes:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", route.port))
            sock.listen(128)
            sock.setblocking(False)

            async def accepted(
                r: asyncio.StreamReader, w: asyncio.StreamWriter, route: NodeRoute = route
            ) -> None:
                await self._from_node(route, r, w)

            self._servers.append(await asyncio.start_server(accepted, sock=sock))
            log.info(
                "127.0.0.1:%d -> netns %s -> %s:%d",
                route.port,
                route.netns,
                self.config.control,
                self.control_port,
            )

    def close(self) -> None:
        """Stop listening; open connections end with the event loop (asyncio.run cancels them)."""
        for server in self._servers:
            server.close()

    async def _from_node(
        self, route: NodeRoute, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        what = f"{route.netns or 'local'} :{route.port}"
        try:
            sock = await asyncio.to_thread(socket_in, route.netns)
        except OSError as exc:
            log.warning("%s: no socket in its netns: %s", what, exc)
            writer.close()
            return
        underlay_options(sock)
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(
                loop.sock_connect(sock, (self.config.control, self.control_port)), self.config.connect_timeout
            )
            upstream = await asyncio.open_connection(sock=sock)
        except (OSError, TimeoutError) as exc:
            sock.close()
            log.info("%s: underlay connect failed (link cut?): %s", what, str(exc) or "timed out")
            writer.close()
            return
        await splice(what, (reader, writer), upstream, self.config.close_timeout)

    async def _from_underlay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        what = f"underlay {peer[0]}:{peer[1]}" if peer else "underlay"
        sock = writer.get_extra_info("socket")
        if sock is not None:
            underlay_options(sock)
        try:
            etcd = await asyncio.wait_for(
                asyncio.open_connection(*self.config.etcd), self.config.connect_timeout
            )
        except (OSError, TimeoutError) as exc:
            log.warning("%s: etcd %s:%d unreachable: %s", what, *self.config.etcd, str(exc) or "timed out")
            writer.close()
            return
        await splice(what, (reader, writer), etcd, self.config.close_timeout)


async def serve(config: RelayConfig) -> None:
    relay = Relay(config)
    await relay.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping")
    relay.close()


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        config = parse_args(sys.argv[1:] if argv is None else argv)
        asyncio.run(serve(config))
    except ShoalError as err:
        print(f"Error: {err}", file=sys.stderr)
        return err.exit_code
    except OSError as err:
        print(f"Error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
