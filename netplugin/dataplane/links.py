"""pyroute2 operations for node-local container networking: the bridge, veth pairs, container netns.

With dataplane/netlink.py (routes, neighbours, FDB for the backends) this is one of the two
modules that import pyroute2. `Links(netns)` programs the node's namespace (None: our own; a
name: a lab host), while our process stays where it is so it can still reach etcd on loopback.
Sockets never subscribe to multicast groups: unread events would only fill their buffers.

Container namespaces are reached per call with a netlink socket opened from a short-lived thread
that setns()-es into them: a thread that dies in another netns affects nothing, and this costs
~0.1 ms where pyroute2's own netns support forks a helper process (~7 ms).
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from agent.errors import ShoalError

CLONE_NEWNET = 0x40000000
LOOPBACK_INDEX = 1  # lo is always the first link of a namespace
NETLINK_ROUTE = 0
AF_INET = socket.AF_INET

_libc = ctypes.CDLL(None, use_errno=True)


class LinkError(ShoalError):
    """A netlink operation failed; the message names the operation, the object and the reason."""


def _name(link: Any) -> str:
    return str(link.get_attr("IFLA_IFNAME"))


def mac_for(ip: IPv4Address) -> str:
    """A locally administered unicast MAC derived from an address (as OVN and CNI do): an address
    handed to a new container comes with the same MAC, so neighbours' ARP caches stay right."""
    return "0a:58:" + ":".join(f"{b:02x}" for b in ip.packed)


def open_netns(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise LinkError(f"open network namespace {path}: {exc.strerror}") from exc


def netns_socket(path: str) -> socket.socket:
    """A NETLINK_ROUTE socket living in the network namespace at `path` (a bind mount or /proc/PID/ns/net)."""
    result: list[socket.socket | BaseException] = []

    def enter() -> None:
        try:
            fd = open_netns(path)
        except LinkError as exc:
            result.append(exc)
            return
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                result.append(LinkError(f"setns into {path}: {os.strerror(err)}"))
                return
            result.append(socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE))
        except BaseException as exc:  # handed to the caller's thread
            result.append(exc)
        finally:
            os.close(fd)

    worker = threading.Thread(target=enter, name="shoal-netns-socket")
    worker.start()
    worker.join()
    got = result[0]
    if isinstance(got, BaseException):
        raise got
    return got


@dataclass(frozen=True)
class Link:
    name: str
    index: int
    kind: str
    mtu: int
    mac: str
    master: int
    up: bool
    peer_index: int  # veth: the peer's index in its own namespace (0 if unknown)


def _link(msg: Any) -> Link:
    info = msg.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    return Link(
        name=_name(msg),
        index=int(msg["index"]),
        kind=str(kind or ""),
        mtu=int(msg.get_attr("IFLA_MTU") or 0),
        mac=str(msg.get_attr("IFLA_ADDRESS") or ""),
        master=int(msg.get_attr("IFLA_MASTER") or 0),
        up=bool(int(msg["flags"]) & 1),
        peer_index=int(msg.get_attr("IFLA_LINK") or 0),
    )


class _Rtnl:
    """Shared netlink calls over one IPRoute; errors become LinkError naming what was attempted."""

    def __init__(self, ipr: Any, where: str) -> None:
        self.ipr = ipr
        self.where = where

    def close(self) -> None:
        self.ipr.close()

    def call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except NetlinkError as exc:
            raise LinkError(f"{what} in {self.where}: {os.strerror(exc.code)}") from exc

    def get(self, name: str) -> Link | None:
        try:
            found = self.ipr.link("get", ifname=name)
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return None
            raise LinkError(f"get link {name} in {self.where}: {os.strerror(exc.code)}") from exc
        return _link(found[0])

    def require(self, name: str) -> Link:
        link = self.get(name)
        if link is None:
            raise LinkError(f"link {name} not found in {self.where}")
        return link

    def addresses(self, index: int) -> set[IPv4Interface]:
        out: set[IPv4Interface] = set()
        for msg in self.call("list addresses", self.ipr.addr, "dump", family=AF_INET, index=index):
            out.add(IPv4Interface(f"{msg.get_attr('IFA_ADDRESS')}/{msg['prefixlen']}"))
        return out

    def sync_addresses(self, link: Link, want: set[IPv4Interface]) -> None:
        """Make `want` the link's IPv4 addresses: add what is missing, remove anything else."""
        have = self.addresses(link.index)
        for addr in have - want:
            self.call(
                f"remove address {addr} from {link.name}",
                self.ipr.addr,
                "del",
                index=link.index,
                address=str(addr.ip),
                prefixlen=addr.network.prefixlen,
            )
        for addr in want - have:
            self.call(
                f"add address {addr} to {link.name}",
                self.ipr.addr,
                "add",
                index=link.index,
                address=str(addr.ip),
                prefixlen=addr.network.prefixlen,
            )

    def set(self, link: Link, what: str, **attrs: Any) -> None:
        self.call(f"set {what} on {link.name}", self.ipr.link, "set", index=link.index, **attrs)

    def delete(self, name: str) -> bool:
        link = self.get(name)
        if link is None:
            return False
        try:
            self.ipr.link("del", index=link.index)
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:  # gone meanwhile (its netns was deleted)
                return False
            raise LinkError(f"delete link {name} in {self.where}: {os.strerror(exc.code)}") from exc
        return True


class ContainerNet(_Rtnl):
    """Netlink inside one container's network namespace (open with `Links.container`)."""

    def configure(
        self, ifname: str, address: IPv4Interface, gateway: IPv4Address, mtu: int, *, fresh: bool = False
    ) -> Link:
        """lo up; `ifname` with exactly `address`, `mtu`, up; default route via `gateway`.

        `fresh`: `ifname` was just created with its MTU and no address, which saves two
        round trips on the hot path (~1 ms each through pyroute2)."""
        eth = self.require(ifname)
        self.call("set lo up", self.ipr.link, "set", index=LOOPBACK_INDEX, state="up")
        if fresh:
            self.call(
                f"add address {address} to {ifname}",
                self.ipr.addr,
                "add",
                index=eth.index,
                address=str(address.ip),
                prefixlen=address.network.prefixlen,
            )
        else:
            if eth.mtu != mtu:
                self.set(eth, f"mtu {mtu}", mtu=mtu)
            self.sync_addresses(eth, {address})
        if not eth.up:
            self.set(eth, "state up", state="up")
        self.call(
            f"set default route via {gateway}",
            self.ipr.route,
            "replace",
            dst="0.0.0.0/0",
            gateway=str(gateway),
            oif=eth.index,
        )
        return eth


class Links(_Rtnl):
    """Links of the node's namespace: `netns` None is the process's own, else a named netns."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        if netns is None:
            ipr = IPRoute(groups=0)
        else:
            # A socket opened inside the namespace, not pyroute2's netns=: that forks a helper
            # process, which dies (SIGSEGV) when forked from a process already running gRPC.
            # Opening the existing bind mount never creates a namespace by accident. pyroute2
            # wraps the fd per thread: use a Links from one thread only.
            ipr = IPRoute(fileno=netns_socket(f"/run/netns/{netns}").detach(), groups=0)
        super().__init__(ipr, f"netns {netns}" if netns else "the node namespace")
        self.lock = threading.RLock()

    def __enter__(self) -> Links:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def container(self, netns_path: str) -> Iterator[ContainerNet]:
        sock = netns_socket(netns_path)
        ipr = IPRoute(fileno=sock.detach(), groups=0)
        try:
            yield ContainerNet(ipr, f"container netns {netns_path}")
        finally:
            ipr.close()

    def names(self, prefix: str = "") -> list[str]:
        with self.lock:
            links = self.call("list links", self.ipr.link, "dump")
        return sorted(n for n in (_name(m) for m in links) if n.startswith(prefix))

    def ensure_bridge(self, name: str, mtu: int, mac: str) -> Link:
        with self.lock:
            link = self.get(name)
            if link is None:
                self.call(f"create bridge {name}", self.ipr.link, "add", ifname=name, kind="bridge", mtu=mtu)
                link = self.require(name)
            elif link.kind != "bridge":
                raise LinkError(
                    f"{name} in {self.where} exists but is a {link.kind or 'plain'} link, not a bridge"
                )
            if link.mtu != mtu:
                self.set(link, f"mtu {mtu}", mtu=mtu)
            if link.mac != mac:
                # Pinned: else the bridge takes its ports' lowest MAC, which changes as they come and go.
                self.set(link, f"address {mac}", address=mac)
            if not link.up:
                self.set(link, "state up", state="up")
            return self.require(name)

    def set_addresses(self, name: str, want: set[IPv4Interface]) -> None:
        with self.lock:
            self.sync_addresses(self.require(name), want)

    def add_veth(self, name: str, peer: str, netns_path: str, mtu: int, peer_mac: str) -> None:
        """A veth pair whose peer is created directly inside the namespace at `netns_path`."""
        fd = open_netns(netns_path)
        try:
            with self.lock:
                self.call(
                    f"create veth {name} (peer {peer} in {netns_path})",
                    self.ipr.link,
                    "add",
                    ifname=name,
                    kind="veth",
                    mtu=mtu,
                    peer={"ifname": peer, "net_ns_fd": fd, "mtu": mtu, "address": peer_mac},
                )
        finally:
            os.close(fd)

    def enslave_up(self, name: str, master: str) -> None:
        """`name` joins bridge `master` and comes up: one request."""
        with self.lock:
            bridge = self.require(master)
            self.call(
                f"set {name} master {master} up",
                self.ipr.link,
                "set",
                ifname=name,
                master=bridge.index,
                state="up",
            )

    def set_mtu(self, name: str, mtu: int) -> None:
        with self.lock:
            self.set(self.require(name), f"mtu {mtu}", mtu=mtu)

    def get_link(self, name: str) -> Link | None:
        with self.lock:
            return self.get(name)

    def delete_link(self, name: str) -> bool:
        """Delete `name` if it exists; True if this call deleted it."""
        with self.lock:
            return self.delete(name)
