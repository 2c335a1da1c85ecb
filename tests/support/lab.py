"""A network lab made of namespaces: one L2 switch and N hosts, for data-plane tests.

    with Lab(hosts=3) as lab:
        lab.host(1).netns, lab.host(1).public_ip, lab.host(1).iface
        lab.exec(1, ["ip", "route"])
        c = make_container_ns(lab, 1)      # a plain netns standing in for a container

Layout: netns `<prefix>-sw` holds bridge `br0` (the physical L2 segment); netns `<prefix>-n<i>`
(i = 1..N) has `eth0` (veth, peer `p<i>` on the switch) with the underlay address `.<i>`, lo up
and ip_forward=1. Every link is created directly inside the lab's namespaces (`ip -n`), never in
the root namespace, and teardown deletes every namespace the lab created (their links go with
them) and kills only the processes it started, even when setup fails half way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from types import TracebackType
from typing import Any

NETNS_DIR = Path("/var/run/netns")
SWITCH_BRIDGE = "br0"
HOST_IFACE = "eth0"


def _run(
    argv: Sequence[str], *, check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), input=input, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


@dataclass(frozen=True)
class LabHost:
    index: int
    netns: str
    public_ip: IPv4Address
    iface: str
    mtu: int
    underlay: IPv4Network

    @property
    def netns_path(self) -> str:
        return str(NETNS_DIR / self.netns)

    @property
    def interface(self) -> IPv4Interface:
        return IPv4Interface(f"{self.public_ip}/{self.underlay.prefixlen}")


@dataclass(frozen=True)
class ContainerNs:
    """A plain network namespace standing in for a container on `host`."""

    name: str
    host: int

    @property
    def path(self) -> str:
        return str(NETNS_DIR / self.name)


@dataclass
class Lab:
    prefix: str = field(default_factory=lambda: f"sl{uuid.uuid4().hex[:4]}")
    hosts: int = 3
    underlay: str = "10.250.0.0/24"
    mtu: int = 1500
    _hosts: dict[int, LabHost] = field(default_factory=dict, init=False)
    _namespaces: list[str] = field(default_factory=list, init=False)
    _procs: list[subprocess.Popen[Any]] = field(default_factory=list, init=False)
    _containers: int = field(default=0, init=False)
    _closed: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if len(self.prefix) > 8:
            raise ValueError(f"lab prefix {self.prefix!r} longer than 8 characters (names must fit 15)")
        self.network = IPv4Network(self.underlay)
        self.switch = f"{self.prefix}-sw"

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Lab:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> None:
        self._add_netns(self.switch)
        self.exec_ns(self.switch, ["ip", "link", "add", SWITCH_BRIDGE, "type", "bridge"])
        self.exec_ns(self.switch, ["ip", "link", "set", SWITCH_BRIDGE, "mtu", str(self.mtu), "up"])
        for _ in range(self.hosts):
            self.add_host()

    def add_host(self) -> LabHost:
        """Plug one more host into the switch (also used by tests for "a host joins")."""
        index = len(self._hosts) + 1
        netns = f"{self.prefix}-n{index}"
        ip = self.network.network_address + index
        if ip not in self.network or ip == self.network.broadcast_address:
            raise ValueError(f"underlay {self.network} has no room for host {index}")
        self._add_netns(netns)
        port = f"p{index}"
        # Create the pair inside the switch netns and move one end straight to the host netns:
        # nothing ever appears in the root namespace.
        self.exec_ns(
            self.switch,
            [
                "ip",
                "link",
                "add",
                port,
                "mtu",
                str(self.mtu),
                "type",
                "veth",
                "peer",
                "name",
                HOST_IFACE,
                "mtu",
                str(self.mtu),
                "netns",
                netns,
            ],
        )
        self.exec_ns(self.switch, ["ip", "link", "set", port, "master", SWITCH_BRIDGE, "up"])
        self.exec_ns(netns, ["ip", "addr", "add", f"{ip}/{self.network.prefixlen}", "dev", HOST_IFACE])
        self.exec_ns(netns, ["ip", "link", "set", HOST_IFACE, "up"])
        self.exec_ns(netns, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        host = LabHost(index, netns, ip, HOST_IFACE, self.mtu, self.network)
        self._hosts[index] = host
        return host

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        errors: list[str] = []
        for name in reversed(self._namespaces):
            if _netns_exists(name):
                res = _run(["ip", "netns", "del", name], check=False)
                if res.returncode != 0:
                    errors.append(f"{name}: {res.stderr.strip()}")
        if errors:
            raise RuntimeError("lab teardown failed: " + "; ".join(errors))

    def _add_netns(self, name: str) -> None:
        if _netns_exists(name):
            raise RuntimeError(
                f"netns {name} already exists: refusing to reuse a namespace we did not create"
            )
        _run(["ip", "netns", "add", name])
        self._namespaces.append(name)
        self.exec_ns(name, ["ip", "link", "set", "lo", "up"])

    # -- access ------------------------------------------------------------------------------

    def host(self, index: int) -> LabHost:
        """Host `index`, counted from 1 like the namespace names (`<prefix>-n1`)."""
        try:
            return self._hosts[index]
        except KeyError:
            raise KeyError(f"lab has hosts 1..{len(self._hosts)}, not {index}") from None

    @property
    def all_hosts(self) -> list[LabHost]:
        return [self._hosts[i] for i in sorted(self._hosts)]

    def _netns_of(self, host: int | LabHost | ContainerNs | str) -> str:
        if isinstance(host, LabHost):
            return host.netns
        if isinstance(host, ContainerNs):
            return host.name
        if isinstance(host, str):
            if host not in self._namespaces:
                raise ValueError(f"netns {host} was not created by this lab")
            return host
        return self.host(host).netns

    def exec(
        self,
        host: int | LabHost | ContainerNs | str,
        argv: Sequence[str],
        *,
        check: bool = True,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside the host's (or container stand-in's) netns; text output captured."""
        return self.exec_ns(self._netns_of(host), argv, check=check, input=input)

    def exec_ns(
        self, netns: str, argv: Sequence[str], *, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        if netns not in self._namespaces:
            raise ValueError(f"netns {netns} was not created by this lab")
        return _run(["ip", "netns", "exec", netns, *argv], check=check, input=input)

    def popen(
        self, host: int | LabHost | ContainerNs | str, argv: Sequence[str], **kwargs: Any
    ) -> subprocess.Popen[Any]:
        """Start a long-running process inside a netns; the lab kills it (by pid) on close."""
        proc: subprocess.Popen[Any] = subprocess.Popen(
            ["ip", "netns", "exec", self._netns_of(host), *argv], **kwargs
        )
        self._procs.append(proc)
        return proc

    def new_container_ns(self, host: int | LabHost) -> ContainerNs:
        index = host.index if isinstance(host, LabHost) else self.host(host).index
        self._containers += 1
        name = f"{self.prefix}-c{self._containers}"
        self._add_netns(name)
        return ContainerNs(name, index)

    def del_container_ns(self, ns: ContainerNs) -> None:
        if ns.name in self._namespaces and _netns_exists(ns.name):
            _run(["ip", "netns", "del", ns.name])


def make_container_ns(lab: Lab, host: int | LabHost) -> ContainerNs:
    """A plain netns (lo up) standing in for a container on `host`; deleted with the lab."""
    return lab.new_container_ns(host)


def lab_names_in_use(prefix: str) -> list[str]:
    """Namespaces whose name starts with `prefix-` (to check a test left nothing behind)."""
    if not NETNS_DIR.exists():
        return []
    return sorted(p for p in os.listdir(NETNS_DIR) if p.startswith(f"{prefix}-"))
