"""Scheduling throughput and latency: 1,000 hollow nodes, 10,000 tasks, one real etcd and controller.

The hollow nodes are the real agent code (registration, task worker, status reports) with the
fake runtime, all in one process. Services are submitted through the controller's gRPC API as
fast as one client can; a watch on the assignments prefix timestamps when each task's placement
was committed (an assignment is written in the same transaction as the placed task).

    python -m bench.scheduling [--nodes 1000] [--services 100] [--replicas 100] [--rate 0]

Reports placements per second (tasks / (last commit - first submit)) and the p50/p99 latency from
a service's submit to each of its tasks' assignment commit. `--rate` paces the submissions (services
per second; 0 = as fast as possible, a burst whose latency is mostly queueing).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

from controller.api import keyspace
from controller.api.types import ServiceSpec
from controller.store.base import Event
from controller.store.etcd import EtcdStore
from controller.store.etcd_server import EtcdServer
from tests.support.agent import wait_for
from tests.support.cluster import ControllerProcess, HollowFleet


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class CommitClock:
    """Records when each task's first assignment arrived (task id -> (service, monotonic time))."""

    def __init__(self, store: EtcdStore, start_revision: int) -> None:
        self.seen: dict[str, tuple[str, float]] = {}
        self._watch = store.watch_prefix(keyspace.ASSIGNMENTS, start_revision)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for batch in self._watch:
                now = time.monotonic()
                self._record(batch, now)
        except Exception:  # closed at the end of the run
            return

    def _record(self, batch: list[Event], now: float) -> None:
        for event in batch:
            if event.type != "put":
                continue
            task_id = keyspace.last_component(event.kv.key)
            if task_id not in self.seen:
                self.seen[task_id] = (_service_of(event), now)

    def close(self) -> None:
        self._watch.close()


def _service_of(event: Event) -> str:
    # The assignment's value is the task and its spec; only the service name is needed here.
    data = json.loads(event.kv.value)["data"]
    return str(data["task"]["service_name"])


def run(nodes: int, services: int, replicas: int, rate: float, workdir: Path) -> dict[str, float]:
    total = services * replicas
    with (
        EtcdServer(workdir / "etcd") as etcd,
        ControllerProcess(workdir, etcd.endpoint) as controller,
        HollowFleet(workdir, etcd.endpoint, nodes, "h", ["--ttl", "10"], startup_timeout=300),
    ):
        store = EtcdStore([etcd.endpoint])
        with controller.client() as api:
            wait_for(lambda: len(api.list_nodes()) == nodes, timeout=60, what=f"{nodes} nodes")
            _, revision = store.list(keyspace.ASSIGNMENTS)
            clock = CommitClock(store, revision + 1)
            submitted: dict[str, float] = {}
            first = time.monotonic()
            for i in range(services):
                if rate > 0:
                    time.sleep(max(0.0, first + i / rate - time.monotonic()))
                name = f"svc{i:04d}"
                submitted[name] = time.monotonic()
                api.create_service(
                    ServiceSpec(name=name, image="busybox", command=["sleep", "600"], replicas=replicas)
                )
            wait_for(lambda: len(clock.seen) >= total, timeout=600, interval=0.1, what=f"{total} placements")
            clock.close()
            store.close()
        latencies = [at - submitted[service] for service, at in clock.seen.values()]
        last = max(at for _, at in clock.seen.values())
        return {
            "nodes": nodes,
            "rate": rate,
            "tasks": total,
            "placements_per_s": total / (last - first),
            "latency_p50_s": pct(latencies, 0.5),
            "latency_p99_s": pct(latencies, 0.99),
            "latency_max_s": max(latencies),
            "submit_s": max(submitted.values()) - first,
            "total_s": last - first,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--replicas", type=int, default=100)
    parser.add_argument("--rate", type=float, default=0.0, help="services submitted per second; 0: a burst")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shoal-bench-sched-") as tmp:
        result = run(args.nodes, args.services, args.replicas, args.rate, Path(tmp))
    print(
        f"{result['tasks']} tasks on {result['nodes']} hollow nodes"
        f"{f', submitted at {args.rate:g} services/s' if args.rate else ', submitted as a burst'}: "
        f"{result['placements_per_s']:.0f} placements/s (target >= 1000), "
        f"submit->commit p50 {result['latency_p50_s'] * 1000:.0f} ms, "
        f"p99 {result['latency_p99_s'] * 1000:.0f} ms, max {result['latency_max_s'] * 1000:.0f} ms; "
        f"submitting took {result['submit_s']:.2f} s, all committed after {result['total_s']:.2f} s"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
