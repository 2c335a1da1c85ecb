"""Programming the overlay for many peers: N simulated leases applied on one lab host.

    python -m bench.overlay_routes [--leases 50] [--rounds 5]

For each backend (vxlan, host-gw, vxlan+DirectRouting) a fresh lab host gets NetworkSync.update()
with N remote leases in one call (list our entries, diff, apply: for vxlan 3 kernel entries per
lease), timed from the call to its return; then one more lease joining (incremental), one leaving,
and a no-op update (the cost of a level-triggered re-diff, i.e. one repair pass). Prints JSON with
the median of `--rounds` runs. Goal: 50 leases in <= 1 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from netplugin.backends.registry import BACKENDS
from netplugin.config import parse_config
from netplugin.dataplane.netlink import Netlink
from netplugin.subnet.model import SubnetLease
from netplugin.sync import NetworkSync
from tests.support.lab import Lab


def leases(n: int, kind: str, underlay: IPv4Network) -> dict[IPv4Network, SubnetLease]:
    out = {}
    for i in range(2, n + 2):
        subnet = IPv4Network(f"10.5.{i}.0/24")
        # peers' public IPs: on our segment (they need not exist for the kernel to take the entries)
        public = underlay.network_address + i
        mac = f"02:00:00:00:{i >> 8:02x}:{i & 0xFF:02x}" if kind == "vxlan" else ""
        out[subnet] = SubnetLease(subnet, IPv4Address(public), kind, 1 if mac else 0, mac)
    return out


def one_round(kind: str, direct: bool, n: int, base: Path) -> dict[str, float]:
    body = {"Network": "10.5.0.0/16", "Backend": {"Type": kind, "DirectRouting": direct}}
    config = parse_config(json.dumps(body).encode())
    with Lab(hosts=1, underlay="10.250.0.0/22") as lab, Netlink(lab.host(1).netns) as nl:
        host = lab.host(1)
        underlay = nl.underlay(host.public_ip)
        backend = BACKENDS[kind]()
        vni, mac = backend.prepare(nl, config, underlay, base)
        local = SubnetLease(IPv4Network("10.5.1.0/24"), host.public_ip, kind, vni, mac)
        sync = NetworkSync(nl, backend, config, local, underlay)
        peers = leases(n + 1, kind, underlay.network)
        first = dict(list(peers.items())[:n])
        t0 = time.perf_counter()
        sync.update(first)
        full = time.perf_counter() - t0
        assert len(nl.list_routes()) == n and not sync.rejected and sync.errors == 0
        t0 = time.perf_counter()
        sync.update(peers)
        join = time.perf_counter() - t0
        t0 = time.perf_counter()
        sync.update(first)
        leave = time.perf_counter() - t0
        t0 = time.perf_counter()
        sync.update(first)
        noop = time.perf_counter() - t0
        assert sync.last_changes.empty
        sync.close()
        return {"full": full, "join_one": join, "leave_one": leave, "noop_rediff": noop}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--leases", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    report: dict[str, object] = {"leases": args.leases, "rounds": args.rounds}
    for label, kind, direct in (
        ("vxlan", "vxlan", False),
        ("host-gw", "host-gw", False),
        ("direct", "vxlan", True),
    ):
        runs = []
        for r in range(args.rounds):
            with tempfile.TemporaryDirectory(prefix="shoal-bench-") as tmp:
                runs.append(one_round(kind, direct, args.leases, Path(tmp) / str(r)))
        report[label] = {k: round(statistics.median(x[k] for x in runs), 4) for k in runs[0]}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
