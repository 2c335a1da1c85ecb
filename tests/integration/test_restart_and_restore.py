"""Restart policies on the node and live restore across an agent kill -9."""

from __future__ import annotations

import itertools
import os
import signal
import time
from datetime import datetime
from pathlib import Path

from tests.support.agent import AgentProcess, wait_for
from tests.support.registry import Registry


def reached(agent: AgentProcess, ref: str, status: str, restarts: int) -> bool:
    s = agent.state(ref)
    return bool(s["status"] == status and s["restart_count"] == restarts)


def log_times(agent: AgentProcess, ref: str) -> list[float]:
    lines = agent.cli("container", "logs", "-t", ref).stdout.splitlines()
    return [datetime.fromisoformat(line.split()[0][:26].rstrip("Z") + "+00:00").timestamp() for line in lines]


def test_on_failure_restarts_exactly_max_times_with_growing_delays(agent: AgentProcess) -> None:
    agent.cli(
        "container",
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:3",
        "busybox",
        "sh",
        "-c",
        "echo run; exit 3",
    )
    wait_for(
        lambda: reached(agent, "flaky", "exited", 3),
        timeout=15,
        what="three restarts",
    )
    time.sleep(1.0)  # a fourth restart would have happened by now (delay 0.8 s)
    s = agent.state("flaky")
    assert (s["status"], s["exit_code"], s["restart_count"]) == ("exited", 3, 3)
    starts = log_times(agent, "flaky")
    assert len(starts) == 4
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # Delays 0.1, 0.2, 0.4 s (Docker's backoff): each gap is at least its delay, and they grow.
    # Compared with margins, not pairwise: a loaded machine adds up to ~0.1 s to any start.
    assert gaps[0] >= 0.1 and gaps[1] >= 0.2 and gaps[2] >= 0.4 and gaps[2] > gaps[0], gaps


def test_always_restarts_after_the_process_is_killed(agent: AgentProcess) -> None:
    agent.cli("container", "run", "-d", "--name", "keeper", "--restart", "always", "busybox", "sleep", "300")
    pid = agent.state("keeper")["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(
        lambda: reached(agent, "keeper", "running", 1),
        what="restart after kill",
    )
    assert agent.state("keeper")["pid"] != pid


def test_unless_stopped_does_not_restart_after_stop(agent: AgentProcess) -> None:
    agent.cli(
        "container", "run", "-d", "--name", "us", "--restart", "unless-stopped", "busybox", "sleep", "300"
    )
    agent.cli("container", "stop", "-t", "0", "us")
    time.sleep(0.5)
    s = agent.state("us")
    assert s["status"] == "exited" and s["restart_count"] == 0
    agent.cli("container", "start", "us")
    assert agent.state("us")["status"] == "running"


def test_live_restore_after_agent_kill9(agent: AgentProcess) -> None:
    agent.cli(
        "container",
        "run",
        "-d",
        "--name",
        "ticker",
        "--restart",
        "always",
        "busybox",
        "sh",
        "-c",
        "while true; do echo tick; sleep 0.1; done",
    )
    agent.cli(
        "container",
        "run",
        "-d",
        "--name",
        "dies",
        "--restart",
        "on-failure",
        "busybox",
        "sh",
        "-c",
        "sleep 1; exit 1",
    )
    before = agent.state("ticker")
    log_file = Path(agent.inspect("ticker")["log_path"])

    agent.kill9()
    lines_at_kill = log_file.read_text().count("tick")
    time.sleep(1.5)  # "dies" exits while no agent runs
    assert Path(f"/proc/{before['pid']}").exists()
    assert log_file.read_text().count("tick") > lines_at_kill, "logs keep flowing without the agent"

    agent.start()
    after = agent.state("ticker")
    assert after["status"] == "running" and after["pid"] == before["pid"]
    assert "ticker" in agent.cli("container", "ps").stdout
    wait_for(lambda: agent.state("dies")["restart_count"] >= 1, what="policy applied on adoption")
    # and the adopted container's policy is enforced again
    os.kill(after["pid"], signal.SIGKILL)
    wait_for(
        lambda: reached(agent, "ticker", "running", 1),
        what="adopted container restarted",
    )


def test_backoff_is_configurable_on_the_agent(tmp_path: Path, registry: Registry) -> None:
    flags = ["--restart-delay", "0.5", "--restart-factor", "1"]
    with AgentProcess(tmp_path, registry.host, flags) as agent:
        agent.cli(
            "container",
            "run",
            "-d",
            "--name",
            "steady",
            "--restart",
            "on-failure:2",
            "busybox",
            "sh",
            "-c",
            "echo run; exit 1",
        )
        wait_for(lambda: reached(agent, "steady", "exited", 2), timeout=15, what="two restarts")
        gaps = [b - a for a, b in itertools.pairwise(log_times(agent, "steady"))]
        assert len(gaps) == 2 and all(0.5 <= g < 1.5 for g in gaps), gaps
