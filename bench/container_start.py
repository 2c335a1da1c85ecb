"""Container start latency: Shoal's agent vs raw `runc run -d` vs `podman run -d`, in one run.

Shoal is timed from a warm client sending the run request to the reply, which the agent
sends once runc has started the container's process. Raw runc gets an equivalent bundle
(the same busybox layer on overlayfs, a spec from the same builder). Podman uses runc, its
own storage under a temporary directory and `--network none`.

    python -m bench.container_start [--runs 50]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from agent.images.busybox import make_busybox_rootfs
from agent.models import ContainerCreate
from agent.runtime.rootfs import mount_overlay, unmount
from agent.runtime.spec import OciInputs, build_oci_spec
from tests.support.agent import SHOAL, AgentProcess

PODMAN_CONF = """[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
netns = "none"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


def bench_shoal(agent: AgentProcess, runs: int) -> list[float]:
    client = agent.client()
    req = ContainerCreate(image="bench/busybox:1", command=["sleep", "300"])
    client.container_run(req, start=True)  # warm the channel and the page cache
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        info = client.container_run(req, start=True)
        samples.append(time.perf_counter() - t0)
        assert info.state.status == "running"
    for c in client.container_list(all=True):
        client.container_remove(c.id, force=True)
    return samples


def bench_cli(agent: AgentProcess, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(
            [SHOAL, "--host", agent.host, "container", "run", "-d", "bench/busybox:1", "sleep", "300"],
            check=True,
            capture_output=True,
        )
        samples.append(time.perf_counter() - t0)
    client = agent.client()
    for c in client.container_list(all=True):
        client.container_remove(c.id, force=True)
    return samples


def bench_runc(base: Path, lower: Path, runs: int) -> list[float]:
    root = base / "runc-root"
    samples = []
    for _ in range(runs):
        cid = f"shoalbench-{uuid.uuid4().hex[:8]}"
        bundle = base / cid
        for sub in ("upper", "work", "rootfs"):
            (bundle / sub).mkdir(parents=True)
        mount_overlay([lower], bundle / "upper", bundle / "work", bundle / "rootfs")
        spec = build_oci_spec(
            OciInputs(args=["sleep", "300"], rootfs=bundle / "rootfs", cgroups_path=f"/shoalbench/{cid}")
        )
        (bundle / "config.json").write_text(json.dumps(spec))
        t0 = time.perf_counter()
        subprocess.run(
            ["runc", "--root", str(root), "run", "-d", "--bundle", str(bundle), cid],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        samples.append(time.perf_counter() - t0)
        subprocess.run(["runc", "--root", str(root), "kill", cid, "KILL"], check=False)
        subprocess.run(["runc", "--root", str(root), "delete", "-f", cid], check=False)
        unmount(bundle / "rootfs")
    return samples


def bench_podman(base: Path, lower: Path, runs: int) -> list[float] | None:
    if not shutil.which("podman"):
        return None
    conf = base / "podman"
    conf.mkdir()
    (conf / "containers.conf").write_text(PODMAN_CONF)
    (conf / "storage.conf").write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{conf}/graph"\nrunroot = "{conf}/run"\n'
    )
    env = {
        **os.environ,
        "CONTAINERS_CONF": str(conf / "containers.conf"),
        "CONTAINERS_STORAGE_CONF": str(conf / "storage.conf"),
    }
    tar = base / "busybox.tar"
    subprocess.run(["tar", "-C", str(lower), "-cf", str(tar), "."], check=True)
    subprocess.run(
        ["podman", "import", str(tar), "localhost/shoalbench:1"], env=env, check=True, capture_output=True
    )
    samples = []
    try:
        for _ in range(runs):
            t0 = time.perf_counter()
            subprocess.run(
                ["podman", "run", "-d", "--network", "none", "localhost/shoalbench:1", "/bin/sleep", "300"],
                env=env,
                check=True,
                capture_output=True,
            )
            samples.append(time.perf_counter() - t0)
    finally:
        subprocess.run(["podman", "rm", "-f", "-a", "-t", "0"], env=env, capture_output=True, check=False)
        subprocess.run(["podman", "rmi", "-a", "-f"], env=env, capture_output=True, check=False)
    return samples


def unmount_under(base: Path) -> None:
    """Unmount whatever is mounted below `base`, deepest first.

    podman bind-mounts its own graph directory, and its asynchronous per-container cleanup
    processes can mount it again after `podman rm` returns, so this runs at the very end.
    """
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for point in sorted((p for p in points if p.startswith(f"{base}/")), key=len, reverse=True):
        unmount(Path(point))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--cli-runs", type=int, default=10)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="shoalbench-"))
    lower = make_busybox_rootfs(base / "busybox")
    agent = AgentProcess(base / "agent", None)
    (base / "agent").mkdir()
    try:
        agent.start()
        agent.client().image_import(str(lower), "bench/busybox:1")
        results = {
            "shoal (agent)": bench_shoal(agent, args.runs),
            "raw runc run -d": bench_runc(base, lower, args.runs),
        }
        podman = bench_podman(base, lower, args.runs)
        if podman:
            results["podman run -d"] = podman
        cli = bench_cli(agent, args.cli_runs)
    finally:
        agent.teardown()
        for parent in Path("/sys/fs/cgroup").glob("*/shoalbench"):
            for cg in [*(p for p in parent.iterdir() if p.is_dir()), parent]:
                cg.rmdir()
        unmount_under(base)
        shutil.rmtree(base, ignore_errors=True)

    runc_p50 = pct(results["raw runc run -d"], 0.5)
    print(f"container start, {args.runs} runs each (ms)")
    print(f"{'':22} {'p50':>8} {'p99':>8} {'p50 / runc':>11}")
    for name, samples in results.items():
        p50 = pct(samples, 0.5)
        print(f"{name:22} {p50:8.1f} {pct(samples, 0.99):8.1f} {p50 / runc_p50:10.2f}x")
    print(
        f"`shoal container run -d` wall time (CLI start included), {args.cli_runs} runs: "
        f"p50 {statistics.median(cli) * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
