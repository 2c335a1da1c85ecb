"""A container's network counters: `/proc/<pid>/net/dev` shows the namespace `pid` lives in, so
reading it for the container's init process gives the container's interfaces, not the node's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent.errors import NotFound
from agent.runtime.cgroups import read_small

CONTAINER_IFACE = "eth0"
PROC = Path("/proc")


@dataclass(frozen=True)
class NetCounters:
    rx_bytes: int = 0
    tx_bytes: int = 0


def parse_net_dev(text: str, iface: str = CONTAINER_IFACE) -> NetCounters:
    """The byte counters of `iface` in net/dev's text; zeros when it has no such interface
    (a container on network none has only lo)."""
    for line in text.splitlines()[2:]:  # two header lines
        name, sep, rest = line.partition(":")
        if not sep or name.strip() != iface:
            continue
        fields = rest.split()
        # Receive: bytes packets errs drop fifo frame compressed multicast; then Transmit: bytes ...
        if len(fields) >= 9 and fields[0].isdigit() and fields[8].isdigit():
            return NetCounters(int(fields[0]), int(fields[8]))
    return NetCounters()


def read_net_dev(pid: int, iface: str = CONTAINER_IFACE, proc: Path = PROC) -> NetCounters:
    """NotFound when the process is gone (the container exited while we looked)."""
    if pid <= 0:
        raise NotFound(f"process {pid} not found")
    try:
        text = read_small(f"{proc}/{pid}/net/dev")
    except OSError:
        raise NotFound(f"process {pid} not found: the container is not running") from None
    return parse_net_dev(text, iface)
