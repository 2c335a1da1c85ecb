"""Controller failover: time from `kill -9` of the leading controller to another one leading.

Two real `shoal controller` processes share one real etcd. Each round kills the leader, times
how long until the election key names the other one (watched, not polled), then restarts the
killed one as a follower.

    python -m bench.failover [--rounds 5] [--leader-ttl 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from controller.api import keyspace
from controller.store.etcd import EtcdStore
from controller.store.etcd_server import EtcdServer
from tests.support.agent import wait_for
from tests.support.cluster import ControllerProcess, leader_id


def run(rounds: int, ttl: float, workdir: Path) -> list[float]:
    flags = ["--leader-ttl", str(ttl)]
    takeovers: list[float] = []
    with EtcdServer(workdir / "etcd") as etcd:
        store = EtcdStore([etcd.endpoint])
        controllers = [ControllerProcess(workdir, etcd.endpoint, flags, name=f"ctl-{n}") for n in "ab"]
        try:
            for c in controllers:
                c.start()
            for _ in range(rounds):
                wait_for(lambda: leader_id(store) is not None, timeout=15, what="a leader")
                leader = next(c for c in controllers if c.id == leader_id(store))
                other = next(c for c in controllers if c is not leader)
                _, revision = store.list(keyspace.LEADER)
                with store.watch_prefix(keyspace.LEADER, revision + 1) as watch:
                    leader.kill9()
                    killed = time.monotonic()
                    for batch in watch:
                        if any(e.type == "put" and e.kv.value.decode() == other.id for e in batch):
                            takeovers.append(time.monotonic() - killed)
                            break
                leader.start()
        finally:
            for c in controllers:
                c.stop()
            store.close()
    return takeovers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--leader-ttl", type=float, default=2.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shoal-bench-failover-") as tmp:
        takeovers = run(args.rounds, args.leader_ttl, Path(tmp))
    print(
        f"leader kill -9 -> new leader, {len(takeovers)} rounds (target < 3 s): "
        f"median {statistics.median(takeovers):.2f} s, max {max(takeovers):.2f} s"
    )
    print(json.dumps({"takeover_s": [round(t, 3) for t in takeovers]}))


if __name__ == "__main__":
    main()
