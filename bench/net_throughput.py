"""Container-to-container TCP throughput and request/response latency across two lab hosts.

    python -m bench.net_throughput [--seconds 3] [--runs 20]

Five paths, all built before the first measurement and measured in the same run, each in its own
lab (so every path has the machine's same underlay, 10.250.0.0/24, inside its own namespaces):

  veth            two namespaces joined by one veth pair: the kernel's baseline
  hand host-gw    two hosts on the lab switch, each with a bridge and a veth into a container
                  netns, and a route to the peer's container subnet via the peer's underlay IP
                  (`ip` commands only)
  hand vxlan      the same plus a vxlan device (VNI 1, port 8472, nolearning, MTU underlay - 50)
                  and per peer a static FDB entry, a permanent neighbour and an onlink route
                  (`ip`/`bridge` commands only), laid out as Shoal's backend lays it out
  shoal host-gw   the deployed plugin: real etcd, `shoal network config set --backend ...`, one
  shoal vxlan     `shoal netplugin --netns` per host, container stand-ins attached with
                  netplugin.attach (as tests/integration/test_overlay_daemon.py does)

Container interfaces get the same MTU in the hand-built and Shoal paths (1500 host-gw, 1450
vxlan). Throughput: `iperf3 -c IP -t SECONDS -J` against a one-shot `iperf3 -s -1` in the other
container, end.sum_received.bits_per_second, median of `--runs`. CPU: the machine's busy CPU time
during each transfer (/proc/stat) per Gbit moved, a steadier measure of what a path costs than its
throughput, which also depends on where the scheduler puts iperf3 and softirq work on 2 vCPUs.
Latency: a 1-byte TCP ping-pong (TCP_NODELAY), 2000 round trips after 200 of warm-up per run,
p50/p99 over all runs' samples. The runs are interleaved: each round runs iperf on every path, then
the ping-pong on every path, with each Shoal path right next to its hand-built twin (which of the
two goes first alternates), so the machine's drift lands on both alike. The Shoal / hand-built
ratios are medians of the rounds' paired ratios with a 95 % bootstrap interval (bench/paired.py):
the throughput target counts as met only when the interval's low end reaches it.

One difference the hand-built paths do not copy: the Shoal daemon installs its rules in each host
netns (table `ip shoal`: notrack, masquerade, published ports; an iptables FORWARD accept). Its
nat chains register conntrack's and NAT's hooks, so every forwarded packet passes them (and the
notrack chain) even though it is not tracked; on the vxlan path each packet does so twice, as the
inner and as the outer (encapsulated) packet.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from bench.paired import paired_ratio
from controller.store.etcd_server import EtcdServer
from netplugin.attach import attach
from netplugin.dataplane.links import Links
from netplugin.ipam import Ipam
from tests.support.agent import wait_for
from tests.support.lab import ContainerNs, Lab, LabHost, lab_names_in_use, make_container_ns
from tests.support.netplugin import Daemon, set_network_config

PY = sys.executable
# Ports inside our own fresh container namespaces: nothing else can hold them there.
IPERF_PORT = 5201
RR_PORT = 7100
RR_TRIPS = 2000
RR_WARMUP = 200
UNDERLAY_MTU = 1500
VXLAN_MTU = UNDERLAY_MTU - 50
VNI = 1
VXLAN_PORT = 8472
TARGET = 0.95  # Shoal's throughput as a share of the hand-built path's
CLK_TCK = os.sysconf("SC_CLK_TCK")

RR_SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
print("ready", flush=True)
c, _ = s.accept()
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
while b := c.recv(1):
    c.sendall(b)
"""
# Prints the round-trip times (ns) of the timed trips as one JSON list.
RR_CLIENT = """
import json, socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
trips, warmup = int(sys.argv[3]), int(sys.argv[4])
clock, send, recv = time.perf_counter_ns, c.sendall, c.recv
for _ in range(warmup):
    send(b"x")
    if not recv(1):
        sys.exit("server closed during warm-up")
out = []
for _ in range(trips):
    t0 = clock()
    send(b"x")
    if not recv(1):
        sys.exit("server closed")
    out.append(clock() - t0)
print(json.dumps(out))
"""
# Exit 0 once the address answers at all (a refused connection is an answer: the path works).
REACHABLE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], 9), timeout=1).close()
except ConnectionRefusedError:
    pass
except OSError:
    sys.exit(1)
"""


@dataclass
class Endpoints:
    """One path under test: a client container, a server container and the server's address."""

    label: str
    lab: Lab
    client: ContainerNs
    server: ContainerNs
    server_ip: IPv4Address
    mtu: int
    gbps: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # busy CPU seconds (whole machine) per Gbit
    rtt_ns: list[int] = field(default_factory=list)


# ---- building the paths ------------------------------------------------------------------------


def build_veth(stack: ExitStack) -> Endpoints:
    lab = stack.enter_context(Lab(hosts=1))
    a, b = make_container_ns(lab, 1), make_container_ns(lab, 1)
    mtu = str(UNDERLAY_MTU)
    pair = ["ip", "link", "add", "eth0", "mtu", mtu, "type", "veth", "peer", "name", "eth0", "mtu", mtu]
    lab.exec(a, [*pair, "netns", b.name])  # made inside `a`, the peer straight into `b`
    for ns, ip in ((a, "10.243.0.1/24"), (b, "10.243.0.2/24")):
        lab.exec(ns, ["ip", "addr", "add", ip, "dev", "eth0"])
        lab.exec(ns, ["ip", "link", "set", "eth0", "up"])
    return Endpoints("veth", lab, a, b, IPv4Address("10.243.0.2"), UNDERLAY_MTU)


def _hand_container(
    lab: Lab, host: LabHost, subnet: IPv4Network, mtu: int
) -> tuple[ContainerNs, IPv4Address]:
    """Bridge `hb0` (gateway .1) in the host netns, a veth into a fresh container netns (.2)."""
    gateway, ip = subnet.network_address + 1, subnet.network_address + 2
    c = make_container_ns(lab, host)
    m = str(mtu)
    lab.exec(host, ["ip", "link", "add", "hb0", "mtu", m, "type", "bridge"])
    lab.exec(host, ["ip", "addr", "add", f"{gateway}/{subnet.prefixlen}", "dev", "hb0"])
    lab.exec(host, ["ip", "link", "set", "hb0", "up"])
    veth = ["ip", "link", "add", "vc1", "mtu", m, "type", "veth", "peer", "name", "eth0", "mtu", m]
    lab.exec(host, [*veth, "netns", c.name])
    lab.exec(c, ["ip", "addr", "add", f"{ip}/{subnet.prefixlen}", "dev", "eth0"])
    lab.exec(c, ["ip", "link", "set", "eth0", "up"])
    lab.exec(c, ["ip", "route", "add", "default", "via", str(gateway)])
    lab.exec(host, ["ip", "link", "set", "vc1", "master", "hb0", "up"])
    return c, ip


def build_hand_hostgw(stack: ExitStack) -> Endpoints:
    lab = stack.enter_context(Lab(hosts=2))
    h1, h2 = lab.host(1), lab.host(2)
    s1, s2 = IPv4Network("10.244.1.0/24"), IPv4Network("10.244.2.0/24")
    c1, _ = _hand_container(lab, h1, s1, UNDERLAY_MTU)
    c2, ip2 = _hand_container(lab, h2, s2, UNDERLAY_MTU)
    for host, peer, peer_subnet in ((h1, h2, s2), (h2, h1, s1)):
        lab.exec(
            host, ["ip", "route", "add", str(peer_subnet), "via", str(peer.public_ip), "dev", host.iface]
        )
    return Endpoints("hand host-gw", lab, c1, c2, ip2, UNDERLAY_MTU)


def build_hand_vxlan(stack: ExitStack) -> Endpoints:
    lab = stack.enter_context(Lab(hosts=2))
    h1, h2 = lab.host(1), lab.host(2)
    subnets = {1: IPv4Network("10.245.1.0/24"), 2: IPv4Network("10.245.2.0/24")}
    macs = {1: "02:5a:00:00:00:01", 2: "02:5a:00:00:00:02"}
    c1, _ = _hand_container(lab, h1, subnets[1], VXLAN_MTU)
    c2, ip2 = _hand_container(lab, h2, subnets[2], VXLAN_MTU)
    for host, peer in ((h1, h2), (h2, h1)):
        vx = ["ip", "link", "add", "vx1", "address", macs[host.index], "mtu", str(VXLAN_MTU), "type", "vxlan"]
        vx += ["id", str(VNI), "dstport", str(VXLAN_PORT), "local", str(host.public_ip), "dev", host.iface]
        lab.exec(host, [*vx, "nolearning"])
        # As Shoal (and flannel): the subnet's .0/32 on the device, the source of the node's own traffic.
        lab.exec(host, ["ip", "addr", "add", f"{subnets[host.index].network_address}/32", "dev", "vx1"])
        lab.exec(host, ["ip", "link", "set", "vx1", "up"])
        peer_subnet, peer_mac = subnets[peer.index], macs[peer.index]
        gw = str(peer_subnet.network_address)
        fdb = [
            "bridge",
            "fdb",
            "append",
            peer_mac,
            "dev",
            "vx1",
            "dst",
            str(peer.public_ip),
            "self",
            "permanent",
        ]
        lab.exec(host, fdb)
        neigh = ["ip", "neigh", "replace", gw, "lladdr", peer_mac, "dev", "vx1", "nud", "permanent"]
        lab.exec(host, neigh)
        lab.exec(host, ["ip", "route", "add", str(peer_subnet), "via", gw, "dev", "vx1", "onlink"])
    return Endpoints("hand vxlan", lab, c1, c2, ip2, VXLAN_MTU)


def build_shoal(stack: ExitStack, endpoint: str, base: Path, backend: str) -> Endpoints:
    prefix = f"/shoalbench-{uuid.uuid4().hex[:8]}/network"
    network = "10.246.0.0/16" if backend == "host-gw" else "10.247.0.0/16"
    set_network_config(endpoint, prefix, network, "--backend", backend)
    lab = stack.enter_context(Lab(hosts=2))
    daemons = [Daemon(h, base / h.netns) for h in lab.all_hosts]
    for d in daemons:
        d.base.mkdir(parents=True)
        stack.callback(d.stop)  # runs before the lab's teardown (LIFO)
        d.start(endpoint, prefix)
    expected = UNDERLAY_MTU if backend == "host-gw" else VXLAN_MTU
    attached: list[tuple[ContainerNs, IPv4Address]] = []
    for d in daemons:
        env = d.env()
        if env.mtu != expected:
            raise RuntimeError(f"shoal {backend} on {d.host.netns}: MTU {env.mtu}, expected {expected}")
        c = make_container_ns(lab, d.host)
        with Links(d.host.netns) as links:
            a = attach(links, Ipam(d.base / "ipam", env.subnet), c.name, c.path, "shoal0", env.mtu)
        attached.append((c, a.ip.ip))
    (c1, _), (c2, ip2) = attached
    return Endpoints(f"shoal {backend}", lab, c1, c2, ip2, expected)


# ---- measuring ---------------------------------------------------------------------------------


def wait_reachable(path: Endpoints) -> None:
    def answers() -> bool:
        argv = [PY, "-c", REACHABLE, str(path.server_ip)]
        return path.lab.exec(path.client, argv, check=False).returncode == 0

    wait_for(answers, timeout=60, interval=0.2, what=f"{path.label}: {path.server_ip} reachable")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """The server should be gone by itself; if not, kill it by its own pid."""
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def busy_seconds() -> float:
    """CPU time the whole machine has spent busy (all CPUs, not idle or iowait), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / CLK_TCK


def iperf(path: Endpoints, seconds: int) -> float:
    """Gbit/s received by the server, one `iperf3 -c` run against a one-shot server. Also records
    the machine's busy CPU time per Gbit moved (`path.cpu`)."""
    lab, ip = path.lab, str(path.server_ip)
    server = lab.popen(
        path.server,
        ["iperf3", "-s", "-1", "-B", ip, "-p", str(IPERF_PORT)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def listening() -> bool:
            if server.poll() is not None:
                raise RuntimeError(f"{path.label}: iperf3 server exited with {server.returncode}")
            ss = lab.exec(path.server, ["ss", "-Hltn", f"sport = :{IPERF_PORT}"]).stdout
            return bool(ss.strip())

        wait_for(listening, timeout=10, what=f"{path.label}: iperf3 server")
        argv = ["iperf3", "-c", ip, "-p", str(IPERF_PORT), "-t", str(seconds), "-J"]
        busy = busy_seconds()
        res = lab.exec(path.client, argv, check=False)
        busy = busy_seconds() - busy
        result = json.loads(res.stdout) if res.stdout.strip() else {}
        if res.returncode != 0 or "error" in result:
            why = result.get("error") or f"{res.stdout[-500:]} {res.stderr}"
            raise RuntimeError(f"{path.label}: iperf3 client failed: {why}")
        end = result["end"]
        gbps = float(end["sum_received"]["bits_per_second"]) / 1e9
        path.cpu.append(busy / (float(end["sum_received"]["bytes"]) * 8 / 1e9))
    finally:
        _stop(server)
    return gbps


def ping_pong(path: Endpoints) -> list[int]:
    """Round-trip times (ns) of RR_TRIPS 1-byte exchanges on one TCP connection."""
    lab, ip = path.lab, str(path.server_ip)
    server = lab.popen(path.server, [PY, "-c", RR_SERVER, ip, str(RR_PORT)], stdout=subprocess.PIPE)
    try:
        if server.stdout is None or server.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"{path.label}: ping-pong server did not start")
        argv = [PY, "-c", RR_CLIENT, ip, str(RR_PORT), str(RR_TRIPS), str(RR_WARMUP)]
        res = lab.exec(path.client, argv, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"{path.label}: ping-pong client failed: {res.stderr.strip()}")
        samples: list[int] = json.loads(res.stdout)
    finally:
        _stop(server)
    return samples


def pct_us(samples: list[int], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] / 1000


# ---- report ------------------------------------------------------------------------------------


def report(paths: list[Endpoints], seconds: int, runs: int) -> None:
    by = {p.label: p for p in paths}
    gbps = {p.label: statistics.median(p.gbps) for p in paths}
    cpu = {p.label: statistics.median(p.cpu) for p in paths}
    p50 = {p.label: pct_us(p.rtt_ns, 0.5) for p in paths}
    p99 = {p.label: pct_us(p.rtt_ns, 0.99) for p in paths}
    base = gbps["veth"]
    print(f"container-to-container across two lab hosts: iperf3 {seconds}s x {runs} (median),")
    print(f"TCP 1-byte ping-pong {RR_TRIPS} trips x {runs} (pooled); CPU: busy CPU-seconds per Gbit moved")
    head = f"{'path':15} {'MTU':>5} {'Gbit/s':>7} {'vs veth':>8} {'CPU s/Gbit':>10}"
    head += f" {'RR p50 us':>10} {'RR p99 us':>10}"
    print(f"{head}  runs Gbit/s")
    for p in paths:
        runs_text = " ".join(f"{g:.2f}" for g in p.gbps)
        line = f"{p.label:15} {p.mtu:5} {gbps[p.label]:7.2f} {gbps[p.label] / base:8.2f} {cpu[p.label]:10.4f}"
        print(f"{line} {p50[p.label]:10.1f} {p99[p.label]:10.1f}  {runs_text}")
    ratios: dict[str, dict[str, object]] = {}
    for kind in ("host-gw", "vxlan"):
        shoal, hand = by[f"shoal {kind}"], by[f"hand {kind}"]
        tput = paired_ratio(shoal.gbps, hand.gbps)
        cost = paired_ratio(shoal.cpu, hand.cpu)
        verdict = tput.verdict(TARGET)
        ratios[kind] = {
            "throughput": round(tput.point, 3),
            "throughput_ci95": [round(tput.low, 3), round(tput.high, 3)],
            "throughput_target": TARGET,
            "verdict": verdict,
            "throughput_of_medians": round(gbps[shoal.label] / gbps[hand.label], 3),
            "cpu_per_gbit": round(cost.point, 3),
            "cpu_per_gbit_ci95": [round(cost.low, 3), round(cost.high, 3)],
            "rr_p50": round(p50[shoal.label] / p50[hand.label], 3),
            "rr_p99": round(p99[shoal.label] / p99[hand.label], 3),
        }
        r = ratios[kind]
        print(f"shoal {kind} / hand-built {kind}:")
        print(f"  throughput {tput.text()}: target >= {TARGET}: {verdict}")
        print(f"  (ratio of medians {r['throughput_of_medians']:.3f}); CPU per Gbit {cost.text()}")
        print(f"  RR latency p50 {r['rr_p50']:.3f}x, p99 {r['rr_p99']:.3f}x")
    out = {
        "seconds": seconds,
        "runs": runs,
        "rr_trips": RR_TRIPS,
        "paths": {
            label: {
                "mtu": by[label].mtu,
                "gbps": round(gbps[label], 3),
                "gbps_runs": [round(g, 3) for g in by[label].gbps],
                "cpu_s_per_gbit": round(cpu[label], 5),
                "vs_veth": round(gbps[label] / base, 3),
                "rr_p50_us": round(p50[label], 1),
                "rr_p99_us": round(p99[label], 1),
            }
            for label in gbps
        },
        "shoal_vs_hand": ratios,
    }
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=20, help="rounds; the verdict needs about 20")
    args = parser.parse_args()
    if shutil.which("iperf3") is None:
        raise SystemExit("iperf3 not found: install it (apt-get install iperf3)")
    base = Path(tempfile.mkdtemp(prefix="shoalbench-tput-"))
    prefixes: list[str] = []
    try:
        with ExitStack() as stack:
            endpoint = stack.enter_context(EtcdServer(base / "etcd", name_prefix="shoalbench-")).endpoint
            builders: list[Callable[[], Endpoints]] = [
                lambda: build_veth(stack),
                lambda: build_hand_hostgw(stack),
                lambda: build_hand_vxlan(stack),
                lambda: build_shoal(stack, endpoint, base, "host-gw"),
                lambda: build_shoal(stack, endpoint, base, "vxlan"),
            ]
            paths: list[Endpoints] = []
            for build in builders:
                path = build()
                prefixes.append(path.lab.prefix)
                paths.append(path)
            for path in paths:
                wait_reachable(path)
            veth, hand_hostgw, hand_vxlan, shoal_hostgw, shoal_vxlan = paths
            pairs = [[hand_hostgw, shoal_hostgw], [hand_vxlan, shoal_vxlan]]
            for r in range(args.runs):
                twins = [pair if r % 2 == 0 else pair[::-1] for pair in pairs]
                order = [veth, *(p for pair in (twins if r % 4 < 2 else twins[::-1]) for p in pair)]
                for path in order:
                    path.gbps.append(iperf(path, args.seconds))
                for path in order:  # not right after a bulk transfer on the same path
                    path.rtt_ns += ping_pong(path)
    finally:
        shutil.rmtree(base, ignore_errors=True)
        left = [name for prefix in prefixes for name in lab_names_in_use(prefix)]
        if left:
            print(f"WARNING: namespaces left behind: {left}", file=sys.stderr)
    report(paths, args.seconds, args.runs)


if __name__ == "__main__":
    main()
