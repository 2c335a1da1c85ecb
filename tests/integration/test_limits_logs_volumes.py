"""cgroup limits, security defaults, log rotation and following, and volumes."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.agent import SHOAL, AgentProcess, wait_for
from tests.support.registry import Registry

DOCKER_DEFAULT_CAPS = "00000000a80425fb"


def test_memory_limit_oom_kill_is_reported(agent: AgentProcess) -> None:
    result = agent.cli(
        "container",
        "run",
        "--name",
        "hog",
        "--memory",
        "16m",
        "busybox",
        "sh",
        "-c",
        "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done",
        check=False,
    )
    assert result.returncode == 137
    s = agent.state("hog")
    assert s["oom_killed"] is True and s["exit_code"] == 137


def test_pids_limit_holds(agent: AgentProcess) -> None:
    # busybox sh gives up when a fork fails, so the forks happen in a child shell and the
    # container's main shell then execs (no fork) into a long sleep.
    agent.cli(
        "container",
        "run",
        "-d",
        "--name",
        "forker",
        "--pids-limit",
        "10",
        "busybox",
        "sh",
        "-c",
        "sh -c 'for i in $(seq 1 30); do sleep 60 & done'; exec sleep 300",
    )
    wait_for(lambda: "can't fork" in agent.cli("container", "logs", "forker").stderr, what="fork failure")
    stats = agent.client().container_stats("forker")
    assert 8 <= stats.pids <= 10, stats


def test_security_defaults_visible_inside(agent: AgentProcess) -> None:
    status = agent.cli("container", "run", "busybox", "cat", "/proc/1/status").stdout
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert fields["CapEff"].strip() == DOCKER_DEFAULT_CAPS
    assert fields["CapBnd"].strip() == DOCKER_DEFAULT_CAPS
    assert fields["Seccomp"].strip() == "2"
    assert fields["NoNewPrivs"].strip() == "1"
    sysctl = agent.cli(
        "container", "run", "busybox", "sh", "-c", "echo 1 > /proc/sys/kernel/domainname", check=False
    )
    assert sysctl.returncode != 0 and "Read-only file system" in sysctl.stderr
    # a syscall on Docker's deny list fails with EPERM even for root in the container
    mount = agent.cli("container", "run", "busybox", "mount", "-t", "tmpfs", "x", "/mnt", check=False)
    assert mount.returncode != 0


def test_cpu_quota_and_stats(agent: AgentProcess) -> None:
    agent.cli(
        "container",
        "run",
        "-d",
        "--name",
        "spin",
        "--cpus",
        "0.5",
        "--memory",
        "64m",
        "busybox",
        "sh",
        "-c",
        "while true; do :; done",
    )
    time.sleep(2)
    stats = agent.client().container_stats("spin")
    assert 0.3 < stats.cpu_seconds < 1.6, stats  # about 0.5 CPU for 2 s
    assert stats.memory_limit_bytes == 64 * 1024 * 1024 and stats.memory_working_set_bytes > 0
    assert "spin" in agent.cli("container", "stats").stdout


@pytest.fixture
def small_log_agent(tmp_path: Path, registry: Registry) -> Iterator[AgentProcess]:
    with AgentProcess(tmp_path, registry.host, ["--log-max-size", "4k", "--log-max-files", "3"]) as a:
        yield a


def test_logs_rotate_at_configured_size(small_log_agent: AgentProcess) -> None:
    a = small_log_agent
    a.cli("container", "run", "--name", "chatty", "busybox", "sh", "-c", "seq 1 2000")
    log_path = Path(a.inspect("chatty")["log_path"])
    files = sorted(p.name for p in log_path.parent.iterdir())
    assert files == ["container.log", "container.log.1", "container.log.2"]
    assert all(p.stat().st_size <= 4096 + 200 for p in log_path.parent.iterdir())
    lines = a.cli("container", "logs", "chatty").stdout.split()
    assert lines[-1] == "2000" and "1" not in lines
    assert a.cli("container", "logs", "--tail", "2", "chatty").stdout.split() == ["1999", "2000"]


def test_logs_follow_streams_new_lines(agent: AgentProcess) -> None:
    agent.cli(
        "container",
        "run",
        "-d",
        "--name",
        "stream",
        "busybox",
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo line$i; sleep 0.2; done",
    )
    follower = subprocess.Popen(
        [SHOAL, "--host", agent.host, "container", "logs", "-f", "stream"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert follower.stdout is not None
        seen = [follower.stdout.readline().strip() for _ in range(6)]
        assert seen == [f"line{i}" for i in range(1, 7)]
        agent.cli("container", "stop", "-t", "0", "stream")
        follower.wait(timeout=10)  # like docker: -f ends when the container stops
    finally:
        follower.kill()
        follower.wait()


def test_volumes_named_bind_readonly_tmpfs(agent: AgentProcess, tmp_path: Path) -> None:
    binds = tmp_path / "binds"
    (binds / "in.txt").write_text("from host\n")
    # a new named volume is populated from the image's content at its path
    agent.cli("container", "run", "-v", "etcdata:/etc", "busybox", "sh", "-c", "echo added >> /etc/passwd")
    out = agent.cli(
        "container",
        "run",
        "-v",
        "etcdata:/data:ro",
        "busybox",
        "sh",
        "-c",
        "tail -1 /data/passwd; touch /data/x 2>&1 || echo ro-refused",
    ).stdout
    assert out.splitlines()[0] == "added" and "ro-refused" in out
    out = agent.cli(
        "container",
        "run",
        "-v",
        f"{binds}:/host",
        "--tmpfs",
        "/scratch",
        "busybox",
        "sh",
        "-c",
        "cat /host/in.txt; echo back > /host/out.txt; grep ' /scratch ' /proc/mounts",
    ).stdout
    assert out.startswith("from host\n") and "tmpfs" in out
    assert (binds / "out.txt").read_text() == "back\n"
