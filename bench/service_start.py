"""From `service create` returning to every task running, on a real 3-node lab.

A `shoal lab` (3 hosts as network namespaces, etcd, a controller, one netplugin and one agent per
host, runc containers on the overlay) is built in a temporary state dir. Each run creates a busybox
service through the controller's API and watches the cluster's events until every task reports
running (the agents' status writes), then removes it and waits until its containers are gone.

    python -m bench.service_start [--runs 10] [--nodes 3]

Targets (the issue's floor is a hand-built one-node pipeline, ≈ 70 ms for one container and
0.85 s for a burst of 20): one task ≤ 150 ms p50; 30 replicas over 3 nodes ≤ 1.5 s p50.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from controller.api.types import ServiceSpec
from controller.client import ControlClient
from deploy.lab import lab
from tests.support.agent import wait_for


def time_to_running(client: ControlClient, name: str, replicas: int) -> float:
    """Seconds from create_service returning to `replicas` tasks running (seen in the events)."""
    spec = ServiceSpec(name=name, image="busybox", command=["sleep", "600"], replicas=replicas)
    events = client.events()  # from now: subscribed before the create
    try:
        client.create_service(spec)
        created = time.monotonic()
        running: set[str] = set()
        for event in events:
            if event.type == "task" and event.name.startswith(f"{name}.") and event.state == "running":
                running.add(event.id)
                if len(running) >= replicas:
                    return time.monotonic() - created
        raise RuntimeError("the event stream ended")
    finally:
        events.close()


def run(runs: int, nodes: int, workdir: Path) -> dict[str, list[float]]:
    prefix = f"sb{uuid.uuid4().hex[:4]}"
    state, _ = lab.up(workdir / "state", workdir / "run", prefix, nodes=nodes, log=lambda _: None)
    results: dict[str, list[float]] = {"1": [], "30": []}
    try:
        with ControlClient(state.controllers[0].listen) as client:
            for replicas in (1, 30):
                for i in range(runs):
                    name = f"b{replicas}x{i}"
                    results[str(replicas)].append(time_to_running(client, name, replicas))
                    client.remove_service(name)
                    wait_for(lambda: not client.list_tasks(), timeout=60, interval=0.1, what="tasks removed")
    finally:
        lab.down(workdir / "state")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--nodes", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shoal-bench-svc-") as tmp:
        results = run(args.runs, args.nodes, Path(tmp))
    for replicas, target in (("1", 0.150), ("30", 1.5)):
        samples = results[replicas]
        p50 = statistics.median(samples)
        verdict = "ok" if p50 <= target else "ABOVE TARGET"
        print(
            f"service create -> {replicas} task(s) running on {args.nodes} nodes: "
            f"p50 {p50 * 1000:.0f} ms, max {max(samples) * 1000:.0f} ms over {len(samples)} runs "
            f"(target p50 <= {target * 1000:.0f} ms: {verdict})"
        )
    print(json.dumps({k: [round(v, 3) for v in vs] for k, vs in results.items()}))


if __name__ == "__main__":
    main()
