"""Cost of scraping an agent's /metrics with many containers (goal: < 100 ms for 100).

Every scrape reads each running container's cgroup files and /proc/<pid>/net/dev once and
renders the per-container series; timed end to end over HTTP, as Prometheus sees it.

    python -m bench.metrics_scrape [--containers 100] [--scrapes 20]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from agent.images.busybox import make_busybox_rootfs
from agent.models import ContainerCreate, Resources
from tests.support.agent import AgentProcess
from tests.support.metrics import logged_url, parse, scrape, values

GOAL_MS = 100.0


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=100)
    parser.add_argument("--scrapes", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shoal-bench-metrics-") as tmp:
        base = Path(tmp)
        lower = make_busybox_rootfs(base / "busybox")
        (base / "agent").mkdir()
        agent = AgentProcess(base / "agent", None, ["--metrics-address", "127.0.0.1:0"])
        try:
            agent.start()
            url = logged_url(agent.log_file, lambda: agent.proc is not None and agent.proc.poll() is None)
            client = agent.client()
            client.image_import(str(lower), "bench/busybox:1")
            req = ContainerCreate(
                image="bench/busybox:1", command=["sleep", "600"], resources=Resources(memory_bytes=64 << 20)
            )
            t0 = time.perf_counter()
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(lambda _: client.container_run(req, start=True), range(args.containers)))
            started = time.perf_counter() - t0
            text = scrape(url)  # warm: imports, page cache
            running = len(values(parse(text), "shoal_container_pids"))
            assert running == args.containers, f"{running} container series, wanted {args.containers}"
            samples = []
            for _ in range(args.scrapes):
                t0 = time.perf_counter()
                text = scrape(url)
                samples.append(time.perf_counter() - t0)
            median = statistics.median(samples) * 1000
            p95 = pct(samples, 0.95)
            print(f"started {args.containers} busybox containers in {started:.1f}s")
            size = f"{len(text.splitlines())} lines, {len(text) // 1024} KiB"
            print(
                f"/metrics with {running} containers ({size}): "
                f"median {median:.1f} ms, p95 {p95:.1f} ms over {args.scrapes} scrapes "
                f"(goal < {GOAL_MS:.0f} ms: {'met' if p95 < GOAL_MS else 'MISSED'})"
            )
            for c in client.container_list(all=True):
                client.container_remove(c.id, force=True)
        finally:
            agent.teardown()


if __name__ == "__main__":
    main()
