"""Addresses for the containers of one node subnet, kept in files like CNI's host-local IPAM.

State lives in `<state_dir>/<network>/`: one file per allocated address, named by the address and
holding the container id, plus `last_reserved_ip` so allocation goes round the subnet instead of
handing a just-freed address (still in peers' ARP caches) straight to the next container.
Every operation runs under an flock on `<dir>/lock`, so several processes (an agent and its
restarted successor, a CLI) share one pool; a new Ipam over the same directory sees everything.
Files are written to a temporary name and renamed, so a crash never leaves a half-written record.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

from agent.errors import Conflict, invalid

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_LAST = "last_reserved_ip"
_LOCK = "lock"


def check_container_id(container_id: str) -> str:
    if not _ID.match(container_id):
        raise invalid(
            "container_id", container_id, "must be 1-128 letters, digits, '_', '.', '-', starting alnum"
        )
    return container_id


def gateway_of(subnet: IPv4Network) -> IPv4Interface:
    """The bridge's address: the subnet's first host address (flannel's convention)."""
    return IPv4Interface(f"{subnet.network_address + 1}/{subnet.prefixlen}")


class Ipam:
    def __init__(self, state_dir: Path, subnet: IPv4Network, network: str = "shoal") -> None:
        if subnet.prefixlen > 30:
            raise invalid(
                "subnet", str(subnet), "must leave room for a gateway and containers (/30 or wider)"
            )
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", network):
            raise invalid("network", network, "must be letters, digits, '_', '.', '-'")
        self.subnet = subnet
        self.gateway = gateway_of(subnet)
        self.dir = Path(state_dir) / network
        self.dir.mkdir(parents=True, exist_ok=True)

    # -- public -----------------------------------------------------------------------------

    def allocate(self, container_id: str) -> IPv4Interface:
        """The container's address: its existing one if it has one, else the next free one."""
        return self.claim(container_id)[0]

    def claim(self, container_id: str) -> tuple[IPv4Interface, bool]:
        """Like allocate, also telling whether the address is new (so a failed attach frees it)."""
        check_container_id(container_id)
        with self._locked():
            held = self._read_all()
            for ip, owner in held.items():
                if owner == container_id and ip in self.subnet:
                    return IPv4Interface(f"{ip}/{self.subnet.prefixlen}"), False
            for ip, owner in held.items():
                if owner == container_id:  # from an older subnet of this node: unusable now
                    (self.dir / ip.exploded).unlink(missing_ok=True)
            ip = self._next_free(held)
            self._write(ip.exploded, container_id)
            self._write(_LAST, ip.exploded)
            return IPv4Interface(f"{ip}/{self.subnet.prefixlen}"), True

    def release(self, container_id: str) -> list[IPv4Address]:
        """Free every address held by `container_id` (none is fine); returns what was freed."""
        check_container_id(container_id)
        with self._locked():
            freed = [ip for ip, owner in self._read_all().items() if owner == container_id]
            for ip in freed:
                (self.dir / ip.exploded).unlink(missing_ok=True)
            return freed

    def lookup(self, container_id: str) -> IPv4Interface | None:
        with self._locked():
            for ip, owner in self._read_all().items():
                if owner == container_id and ip in self.subnet:
                    return IPv4Interface(f"{ip}/{self.subnet.prefixlen}")
        return None

    def allocations(self) -> dict[IPv4Address, str]:
        """Address -> container id, for everything allocated (including from an older subnet)."""
        with self._locked():
            return self._read_all()

    def leaked(self, live: Collection[str] = ()) -> dict[IPv4Address, str]:
        """Allocations whose container is not in `live`: what a clean node holds none of."""
        return {ip: owner for ip, owner in self.allocations().items() if owner not in live}

    def capacity(self) -> int:
        """How many containers the subnet holds: hosts minus the gateway."""
        return self.subnet.num_addresses - 3

    # -- internals ----------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.dir / _LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing drops the flock

    def _read_all(self) -> dict[IPv4Address, str]:
        held: dict[IPv4Address, str] = {}
        with os.scandir(self.dir) as entries:
            for entry in entries:
                try:
                    ip = IPv4Address(entry.name)
                except ValueError:
                    continue  # lock, last_reserved_ip, temporary files
                try:
                    owner = Path(entry.path).read_text().strip()
                except FileNotFoundError:
                    continue
                held[ip] = owner
        return held

    def _next_free(self, held: dict[IPv4Address, str]) -> IPv4Address:
        first = int(self.subnet.network_address) + 2  # .0 is the network, .1 the gateway
        last = int(self.subnet.broadcast_address) - 1
        size = last - first + 1
        start = first
        try:
            previous = IPv4Address((self.dir / _LAST).read_text().strip())
            if previous in self.subnet and first <= int(previous) <= last:
                start = int(previous) + 1
        except (FileNotFoundError, ValueError):
            pass
        for step in range(size):
            candidate = IPv4Address(first + (start - first + step) % size)
            if candidate not in held:
                return candidate
        raise Conflict(f"subnet {self.subnet} has no free address: all {size} are allocated")

    def _write(self, name: str, content: str) -> None:
        tmp = self.dir / f".{name}.tmp"
        tmp.write_text(content + "\n")
        os.replace(tmp, self.dir / name)
