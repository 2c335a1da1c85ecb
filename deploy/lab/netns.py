"""The lab's wires: netns `<prefix>-sw` holds bridge br0 (the underlay L2 segment); each host netns
`<prefix>-n<i>` has eth0 (a veth whose peer `p<i>` sits on br0) with underlay address `.<i>`;
br0 itself holds `.254`, where the lab's etcd relay listens (deploy/lab/relay.py); hosts drop any
traffic they would forward there (fence_control), so containers cannot reach it.

Links are created directly inside the lab's namespaces (`ip -n`), never in the root namespace, so
deleting the namespaces removes every link. Mirrors tests/support/lab.py's Lab.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

NETNS_DIR = Path("/var/run/netns")
SWITCH_BRIDGE = "br0"
HOST_IFACE = "eth0"
CONTROL_INDEX = 254
MAX_PREFIX = 8
"""Names must fit Linux's 15 characters: `<prefix>-n<i>`, and the agent's cgroup parents."""


def run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def in_ns(netns: str, argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["ip", "netns", "exec", netns, *argv], check=check)


def add(name: str) -> None:
    """Create a netns with lo up; refuses to adopt one we did not create."""
    if exists(name):
        raise RuntimeError(f"netns {name} already exists: refusing to reuse a namespace we did not create")
    run(["ip", "netns", "add", name])
    in_ns(name, ["ip", "link", "set", "lo", "up"])


def delete(name: str) -> None:
    if exists(name):
        run(["ip", "netns", "del", name])


def make_switch(name: str, mtu: int = 1500) -> None:
    in_ns(name, ["ip", "link", "add", SWITCH_BRIDGE, "type", "bridge"])
    in_ns(name, ["ip", "link", "set", SWITCH_BRIDGE, "mtu", str(mtu), "up"])


def control_address(underlay: IPv4Network) -> IPv4Address:
    """The switch bridge's own address (the underlay's .254): the far end of the lab's control path
    (deploy/lab/relay.py). It exists only in the switch netns; hosts are .1-.50."""
    return underlay.network_address + CONTROL_INDEX


def add_control_address(switch: str, underlay: IPv4Network) -> IPv4Address:
    address = control_address(underlay)
    in_ns(switch, ["ip", "addr", "add", f"{address}/{underlay.prefixlen}", "dev", SWITCH_BRIDGE])
    return address


def host_address(underlay: IPv4Network, index: int) -> IPv4Address:
    ip = underlay.network_address + index
    if ip not in underlay or ip == underlay.broadcast_address:
        raise ValueError(f"underlay {underlay} has no room for host {index}")
    return ip


def plug_host(
    switch: str, netns: str, port: str, address: IPv4Address, underlay: IPv4Network, mtu: int = 1500
) -> None:
    """Wire an existing host netns to the switch: the pair is made in the switch netns and one end
    moved straight into the host, so nothing ever appears in the root namespace."""
    m = str(mtu)
    in_ns(
        switch,
        [
            "ip",
            "link",
            "add",
            port,
            "mtu",
            m,
            "type",
            "veth",
            "peer",
            "name",
            HOST_IFACE,
            "mtu",
            m,
            "netns",
            netns,
        ],
    )
    in_ns(switch, ["ip", "link", "set", port, "master", SWITCH_BRIDGE, "up"])
    in_ns(netns, ["ip", "addr", "add", f"{address}/{underlay.prefixlen}", "dev", HOST_IFACE])
    in_ns(netns, ["ip", "link", "set", HOST_IFACE, "up"])
    in_ns(netns, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    fence_control(netns, underlay)


def fence_control(netns: str, underlay: IPv4Network) -> None:
    """Drop whatever a host would forward to the control address: its relay listener hands every
    connection to etcd unauthenticated, so only the host's own sockets (the relay's, OUTPUT) may
    reach it, never a container behind the host (which it routes and masquerades). In mangle, not
    filter: the netplugin later inserts its cluster ACCEPTs at the top of filter FORWARD."""
    rule = ["FORWARD", "-d", f"{control_address(underlay)}/32", "-j", "DROP"]
    in_ns(netns, ["iptables", "-t", "mangle", "-I", *rule])


def set_port(switch: str, port: str, up: bool) -> None:
    """Cut (or restore) a host's underlay link at its switch port."""
    in_ns(switch, ["ip", "link", "set", port, "up" if up else "down"])


def names_in_use(prefix: str) -> list[str]:
    """Namespaces whose name starts with `prefix-`."""
    if not NETNS_DIR.exists():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(f"{prefix}-"))
