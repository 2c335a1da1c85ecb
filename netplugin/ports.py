"""Published ports in host mode: parse `8080:80[/udp]` and check a request against what is published.

Pure: rules.py reads the node's DNAT rules into `Published` records and applies the result.
A host port/protocol pair forwards to exactly one container port on the node; publishing the very
same mapping again is a no-op (level-triggered callers re-apply their whole desired set).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Literal

from agent.errors import Conflict, invalid

Protocol = Literal["tcp", "udp"]
PROTOCOLS: tuple[Protocol, ...] = ("tcp", "udp")

_SPEC = re.compile(r"^(\d{1,5}):(\d{1,5})(?:/([a-z]+))?$")


@dataclass(frozen=True, order=True)
class PortMapping:
    """What a user asks for: host port -> container port."""

    host_port: int
    container_port: int
    protocol: Protocol = "tcp"

    def __str__(self) -> str:
        return f"{self.host_port}:{self.container_port}/{self.protocol}"


@dataclass(frozen=True, order=True)
class Published:
    """One DNAT in force on the node: host_port/protocol -> container_ip:container_port."""

    host_port: int
    protocol: Protocol
    container_ip: IPv4Address
    container_port: int

    def __str__(self) -> str:
        return f"{self.host_port}/{self.protocol} -> {self.container_ip}:{self.container_port}"


def check_port(field: str, value: int) -> int:
    if not 1 <= value <= 65535:
        raise invalid(field, value, "must be a port number between 1 and 65535")
    return value


def check_protocol(field: str, value: str) -> Protocol:
    for proto in PROTOCOLS:
        if value == proto:
            return proto
    raise invalid(field, value, "protocol must be tcp or udp")


def parse_port(spec: str, field: str = "publish") -> PortMapping:
    """`8080:80` or `8080:80/udp` -> PortMapping; anything else is InvalidArgument naming `field`."""
    match = _SPEC.match(spec.strip())
    if match is None:
        raise invalid(field, spec, "must be HOST_PORT:CONTAINER_PORT[/tcp|/udp], e.g. 8080:80")
    host, container, proto = match.groups()
    return PortMapping(
        host_port=check_port(field, int(host)),
        container_port=check_port(field, int(container)),
        protocol=check_protocol(field, proto or "tcp"),
    )


def plan_publish(
    container_ip: IPv4Address, wanted: Iterable[PortMapping], published: Iterable[Published]
) -> list[Published]:
    """The DNATs to add so `container_ip` gets `wanted`; Conflict if a host port is taken.

    All or nothing: a conflict anywhere means nothing is to be added. Mappings already in force
    for this container are left out of the result (idempotent re-publish).
    """
    in_force = {(p.host_port, p.protocol): p for p in published}
    asked: dict[tuple[int, Protocol], Published] = {}
    for mapping in wanted:
        want = Published(mapping.host_port, mapping.protocol, container_ip, mapping.container_port)
        key = (want.host_port, want.protocol)
        other = asked.get(key)
        if other is not None and other != want:
            raise Conflict(
                f"port {mapping.host_port}/{mapping.protocol} is asked for twice "
                f"(to container ports {other.container_port} and {mapping.container_port})"
            )
        asked[key] = want
    add: list[Published] = []
    for key, want in sorted(asked.items()):
        holder = in_force.get(key)
        if holder is None:
            add.append(want)
        elif holder != want:
            raise Conflict(
                f"port {want.host_port}/{want.protocol} is already published on this node "
                f"(to {holder.container_ip}:{holder.container_port})"
            )
    return add


def owned_by(container_ip: IPv4Address, published: Iterable[Published]) -> list[Published]:
    """The DNATs that forward to `container_ip`: what to remove when that container goes."""
    return sorted(p for p in published if p.container_ip == container_ip)
