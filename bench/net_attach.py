"""Per-container network attach: Shoal's `attach` next to the CNI `bridge` plugin with `host-local`.

Both do the same ADD in the same lab run, each on its own lab host (a network namespace) with
its own bridge: a veth pair into a fresh container netns, an address from a file-based pool,
MTU, default route via the bridge's gateway. Shoal is timed in-process from the `attach` call to
its return (the agent keeps one `Links` open); CNI from spawning /usr/lib/cni/bridge (which
itself runs host-local) to its exit, started directly inside the host's netns as a container
runtime would run it (no `ip netns exec` in the measured time). Then the same for DEL/detach
while the container netns still exists (the veth deletion dominates both).

    python -m bench.net_attach [--runs 100]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from ipaddress import IPv4Network
from pathlib import Path

from netplugin.attach import attach, detach
from netplugin.bridge import ensure_bridge
from netplugin.dataplane.links import CLONE_NEWNET, Links
from netplugin.ipam import Ipam, gateway_of
from tests.support.lab import ContainerNs, Lab, LabHost, make_container_ns

CNI_DIR = Path("/usr/lib/cni")
MTU = 1450


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


def bench_shoal(lab: Lab, host: LabHost, base: Path, runs: int) -> tuple[list[float], list[float]]:
    subnet = IPv4Network("10.44.1.0/24")
    add: list[float] = []
    delete: list[float] = []
    with Links(host.netns) as links:
        ensure_bridge(links, gateway=gateway_of(subnet), mtu=MTU)
        ipam = Ipam(base / "shoal-ipam", subnet)
        spaces = [make_container_ns(lab, host) for _ in range(runs + 1)]
        attach(links, ipam, "warm", spaces[0].path, "shoal0", MTU)  # first-use costs out of the way
        for i, ns in enumerate(spaces[1:]):
            t0 = time.perf_counter()
            attach(links, ipam, f"c{i}", ns.path, "shoal0", MTU)
            add.append(time.perf_counter() - t0)
        check_configured(lab, spaces[-1], "10.44.1.")
        for i in range(runs):
            t0 = time.perf_counter()
            detach(links, ipam, f"c{i}")
            delete.append(time.perf_counter() - t0)
    return add, delete


def check_configured(lab: Lab, ns: ContainerNs, prefix: str) -> None:
    """Both contenders must really have done the job: address on eth0, default route."""
    addr = lab.exec(ns, ["ip", "-o", "-4", "addr", "show", "eth0"]).stdout
    route = lab.exec(ns, ["ip", "route", "show", "default"]).stdout
    if (
        f"inet {prefix}" not in addr
        or f"mtu {MTU}" not in lab.exec(ns, ["ip", "link", "show", "eth0"]).stdout
    ):
        raise RuntimeError(f"container {ns.name} not configured: {addr!r}")
    if not route.startswith(f"default via {prefix}1 "):
        raise RuntimeError(f"container {ns.name} has no default route: {route!r}")


def _enter(netns_path: str) -> Callable[[], None]:
    libc = ctypes.CDLL(None, use_errno=True)

    def enter() -> None:  # runs in the child between fork and exec
        fd = os.open(netns_path, os.O_RDONLY)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {netns_path}")
        os.close(fd)

    return enter


def cni(command: str, host: LabHost, ns: ContainerNs, cid: str, config: str) -> float:
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": cid,
        "CNI_NETNS": ns.path,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": str(CNI_DIR),
    }
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(CNI_DIR / "bridge")],
        input=config,
        env=env,
        capture_output=True,
        text=True,
        preexec_fn=_enter(host.netns_path),
    )
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"CNI {command} failed: {proc.stdout} {proc.stderr}")
    return elapsed


def bench_cni(lab: Lab, host: LabHost, base: Path, runs: int) -> tuple[list[float], list[float]]:
    config = json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": "shoalbench",
            "type": "bridge",
            "bridge": "cni0",
            "isGateway": True,
            "ipMasq": False,
            "mtu": MTU,
            "ipam": {
                "type": "host-local",
                "subnet": "10.45.1.0/24",
                "routes": [{"dst": "0.0.0.0/0"}],  # the default route via the gateway, as ours
                "dataDir": str(base / "cni-ipam"),  # never /var/lib/cni
            },
        }
    )
    spaces = [make_container_ns(lab, host) for _ in range(runs + 1)]
    cni("ADD", host, spaces[0], "warm", config)  # creates the bridge, warms the page cache
    add = [cni("ADD", host, ns, f"c{i}", config) for i, ns in enumerate(spaces[1:])]
    check_configured(lab, spaces[-1], "10.45.1.")
    delete = [cni("DEL", host, ns, f"c{i}", config) for i, ns in enumerate(spaces[1:])]
    return add, delete


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    if not (CNI_DIR / "bridge").exists():
        raise SystemExit(f"{CNI_DIR}/bridge not found: install containernetworking-plugins")
    base = Path(tempfile.mkdtemp(prefix="shoalbench-net-"))
    try:
        with Lab(hosts=2) as lab:
            shoal = bench_shoal(lab, lab.host(1), base, args.runs)
            plugin = bench_cni(lab, lab.host(2), base, args.runs)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    print(f"per-container network attach, {args.runs} containers each (ms)")
    print(f"{'':34} {'p50':>7} {'p99':>7}")
    rows = [
        ("shoal attach (in-process)", shoal[0]),
        ("CNI bridge + host-local ADD", plugin[0]),
        ("shoal detach (veth deleted)", shoal[1]),
        ("CNI bridge + host-local DEL", plugin[1]),
    ]
    for name, samples in rows:
        print(f"{name:34} {pct(samples, 0.5):7.1f} {pct(samples, 0.99):7.1f}")
    print(f"attach p50 ratio shoal / CNI: {pct(shoal[0], 0.5) / pct(plugin[0], 0.5):.2f}")


if __name__ == "__main__":
    main()
