"""THE iptables module: masquerade, forwarding and published-port DNAT for one node.

Everything lives in our own chains, hooked into the built-in ones by one jump each:

    raw    PREROUTING  -> SHOAL-NOTRACK      (forwarded or VXLAN) skip conntrack, see below
    raw    OUTPUT      -> SHOAL-NOTRACK      (VXLAN frames we send)
    nat    POSTROUTING -> SHOAL-POSTROUTING  masquerade what leaves the cluster Network from our subnet
                                             (and DNATs from the cluster Network into the subnet)
    nat    PREROUTING  -> SHOAL-PORTS        (to a local address) published ports: DNAT to a container
    nat    OUTPUT      -> SHOAL-PORTS        (local, not loopback) the same for the node's own traffic
    filter FORWARD     -> SHOAL-FORWARD      accept to and from the cluster Network

Container-to-container traffic across hosts is routed by the node without any NAT, so it is
marked NOTRACK: conntrack would only cost throughput (the nat table makes the kernel track every
packet of the namespace), as would tracking the VXLAN frames themselves. Only forwarded packets
(destination not a local address) are skipped; a published port reached at a node's own address
is tracked, and its DNAT from the cluster Network is masqueraded to the gateway, so its replies
are addressed to the node and are tracked too.

Changes go through `iptables-restore --noflush` (one atomic transaction per change, other
software's rules untouched), inside the node's netns via `ip netns exec` when one is given. The
kernel is the record: published ports are read back from `iptables-save`, so a restarted
plugin sees exactly what is in force and re-applying anything is a no-op.
"""

from __future__ import annotations

import shlex
import subprocess
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from agent.errors import ShoalError, invalid
from netplugin.ports import PortMapping, Published, check_port, check_protocol, plan_publish

POSTROUTING = "SHOAL-POSTROUTING"
PORTS = "SHOAL-PORTS"
FORWARD = "SHOAL-FORWARD"
NOTRACK = "SHOAL-NOTRACK"
PORT_COMMENT = "shoal-port"
MULTICAST = "224.0.0.0/4"

# (table, built-in chain, our chain, match before the jump)
JUMPS: tuple[tuple[str, str, str, str], ...] = (
    ("raw", "PREROUTING", NOTRACK, ""),
    ("raw", "OUTPUT", NOTRACK, ""),
    ("nat", "POSTROUTING", POSTROUTING, ""),
    ("nat", "PREROUTING", PORTS, "-m addrtype --dst-type LOCAL"),
    ("nat", "OUTPUT", PORTS, "! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL"),
    ("filter", "FORWARD", FORWARD, ""),
)


@dataclass(frozen=True)
class Vxlan:
    """This node's VXLAN endpoint: its underlay address and the UDP port of the frames."""

    local: IPv4Address
    port: int


class RulesError(ShoalError):
    """iptables refused a change; the message carries its own words."""


def cluster_rules(
    network: IPv4Network, subnet: IPv4Network, vxlan: Vxlan | None = None
) -> dict[str, list[str]]:
    """Pure: the contents of our fixed chains, by table (rule arguments after `-A CHAIN`)."""
    if not subnet.subnet_of(network):
        raise invalid("subnet", str(subnet), f"must lie inside the cluster network {network}")
    notrack = [f"{NOTRACK} -s {network} -d {network} -m addrtype ! --dst-type LOCAL -j NOTRACK"]
    if vxlan is not None:
        # Only our own VXLAN frames (sent from or received at our underlay address): other UDP
        # traffic on that port stays tracked, as the host's firewall may expect.
        frames = f"-p udp -m udp --dport {vxlan.port} -j NOTRACK"
        notrack += [f"{NOTRACK} -s {vxlan.local}/32 {frames}", f"{NOTRACK} -d {vxlan.local}/32 {frames}"]
    return {
        "raw": notrack,
        "nat": [
            # A container reaching a published port at a node's own address: masqueraded to the
            # gateway, or the reply would go straight back to the container, un-NATed (same node)
            # or untracked (another node's container, whose traffic is NOTRACK above).
            f"{POSTROUTING} -s {network} -d {subnet} -m conntrack --ctstate DNAT -j MASQUERADE",
            f"{POSTROUTING} -s {subnet} -d {network} -j RETURN",
            f"{POSTROUTING} -s {subnet} ! -d {MULTICAST} -j MASQUERADE --random-fully",
        ],
        "filter": [
            f"{FORWARD} -s {network} -j ACCEPT",
            f"{FORWARD} -d {network} -j ACCEPT",
        ],
    }


def port_rule(p: Published) -> str:
    """Pure: the SHOAL-PORTS rule for one published port (arguments after -A/-D)."""
    return (
        f"{PORTS} -p {p.protocol} -m {p.protocol} --dport {p.host_port} -m comment --comment {PORT_COMMENT} "
        f"-j DNAT --to-destination {p.container_ip}:{p.container_port}"
    )


def parse_ports(saved: str) -> list[Published]:
    """Pure: the published ports in an `iptables-save -t nat` dump (rules we did not write are skipped)."""
    out: list[Published] = []
    for line in saved.splitlines():
        if not line.startswith(f"-A {PORTS} "):
            continue
        args = shlex.split(line)
        opts = {args[i]: args[i + 1] for i in range(len(args) - 1) if args[i].startswith("-")}
        if opts.get("--comment") != PORT_COMMENT or "--to-destination" not in opts:
            continue
        ip, _, port = opts["--to-destination"].partition(":")
        out.append(
            Published(
                host_port=int(opts["--dport"]),
                protocol=check_protocol("protocol", opts["-p"]),
                container_ip=IPv4Address(ip),
                container_port=int(port),
            )
        )
    return sorted(out)


def _chains(saved: str) -> dict[str, set[str]]:
    """Pure: table -> chain names declared in an iptables-save dump."""
    chains: dict[str, set[str]] = {}
    table = ""
    for line in saved.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
            chains.setdefault(table, set())
        elif line.startswith(":") and table:
            chains[table].add(line[1:].split()[0])
    return chains


def _has_rule(saved: str, table: str, rule: str) -> bool:
    """Pure: does `-A <rule>` appear in `table` of the dump? (iptables-save prints rules canonically.)"""
    current = ""
    want = shlex.split(f"-A {rule}")
    for line in saved.splitlines():
        if line.startswith("*"):
            current = line[1:].strip()
        elif current == table and line.startswith("-A ") and shlex.split(line) == want:
            return True
    return False


def _jump(builtin: str, chain: str, match: str) -> str:
    return " ".join(part for part in (builtin, match, "-j", chain) if part)


class Rules:
    """The node's rules; `netns` None is our own namespace, else a named netns (lab mode)."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._lock = threading.Lock()  # read-check-write of published ports is one step

    # -- cluster ------------------------------------------------------------------------------

    def ensure_cluster(self, network: IPv4Network, subnet: IPv4Network, vxlan: Vxlan | None = None) -> None:
        """Masquerade + forwarding for `subnet` of `network` (and NOTRACK for VXLAN frames on
        `vxlan`); rewrites our chains atomically."""
        wanted = cluster_rules(network, subnet, vxlan)
        with self._lock:
            saved = self._save()
            chains = _chains(saved)
            script: dict[str, list[str]] = {"raw": [], "nat": [], "filter": []}
            # Declaring a chain under --noflush empties it: fine for the fixed chains (rewritten
            # whole in the same transaction), never for SHOAL-PORTS, which holds published ports.
            script["raw"].append(f":{NOTRACK} - [0:0]")
            script["nat"].append(f":{POSTROUTING} - [0:0]")
            script["filter"].append(f":{FORWARD} - [0:0]")
            if PORTS not in chains.get("nat", set()):
                script["nat"].append(f":{PORTS} - [0:0]")
            for table, rules in wanted.items():
                script[table] += [f"-A {rule}" for rule in rules]
            for table, builtin, chain, match in JUMPS:
                if not _has_rule(saved, table, _jump(builtin, chain, match)):
                    script[table].append(f"-I {_jump(builtin, chain, match)}")
            self._restore(script)

    def remove_all(self) -> None:
        """Remove every jump and chain of ours (published ports included); idempotent."""
        with self._lock:
            saved = self._save()
            chains = _chains(saved)
            script: dict[str, list[str]] = {"raw": [], "nat": [], "filter": []}
            for table, builtin, chain, match in JUMPS:
                if _has_rule(saved, table, _jump(builtin, chain, match)):
                    script[table].append(f"-D {_jump(builtin, chain, match)}")
            for table, chain in (("raw", NOTRACK), ("nat", POSTROUTING), ("nat", PORTS), ("filter", FORWARD)):
                if chain in chains.get(table, set()):
                    script[table] += [f"-F {chain}", f"-X {chain}"]
            self._restore(script)

    # -- published ports -------------------------------------------------------------------------

    def all_published(self) -> list[Published]:
        return parse_ports(self._save("nat"))

    def publish(self, port: int, proto: str, container_ip: IPv4Address, container_port: int) -> None:
        """DNAT host `port`/`proto` to container_ip:container_port; Conflict if the port is taken."""
        mapping = PortMapping(
            check_port("published", port),
            check_port("target", container_port),
            check_protocol("protocol", proto),
        )
        self.publish_all(container_ip, [mapping])

    def publish_all(self, container_ip: IPv4Address, mappings: Iterable[PortMapping]) -> list[Published]:
        """All of a container's ports at once, all or nothing; returns what was added."""
        wanted = list(mappings)
        with self._lock:
            saved = self._save("nat")
            add = plan_publish(container_ip, wanted, parse_ports(saved))
            if add:
                script = {"nat": [f"-A {port_rule(p)}" for p in add]}
                if PORTS not in _chains(saved).get("nat", set()):
                    raise RulesError(f"chain {PORTS} is missing in {self._where()}: run ensure_cluster first")
                self._restore(script)
            return add

    def unpublish(self, port: int, proto: str, container_ip: IPv4Address, container_port: int) -> bool:
        """Remove that DNAT if present; True if it was."""
        target = Published(port, check_protocol("protocol", proto), container_ip, container_port)
        return bool(self._remove(lambda p: p == target))

    def unpublish_container(self, container_ip: IPv4Address) -> list[Published]:
        """Remove every DNAT to `container_ip` (when it is detached); returns what was removed."""
        return self._remove(lambda p: p.container_ip == container_ip)

    def _remove(self, select: Callable[[Published], bool]) -> list[Published]:
        with self._lock:
            gone = [p for p in parse_ports(self._save("nat")) if select(p)]
            if gone:
                self._restore({"nat": [f"-D {port_rule(p)}" for p in gone]})
            return gone

    # -- running iptables ----------------------------------------------------------------------

    def _where(self) -> str:
        return f"netns {self.netns}" if self.netns else "the node namespace"

    def _argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else list(argv)

    def _save(self, table: str | None = None) -> str:
        argv = ["iptables-save", *(["-t", table] if table else [])]
        return self._run(argv, None)

    def _restore(self, script: dict[str, list[str]]) -> None:
        text = "".join(
            f"*{table}\n" + "".join(f"{line}\n" for line in lines) + "COMMIT\n"
            for table, lines in script.items()
            if lines
        )
        if text:
            self._run(["iptables-restore", "--noflush", "-w"], text)

    def _run(self, argv: list[str], stdin: str | None) -> str:
        proc = subprocess.run(self._argv(argv), input=stdin, capture_output=True, text=True)
        if proc.returncode != 0:
            detail = proc.stderr.strip().replace("\n", "; ") or f"exit status {proc.returncode}"
            raise RulesError(f"{argv[0]} in {self._where()} failed: {detail}")
        return proc.stdout
