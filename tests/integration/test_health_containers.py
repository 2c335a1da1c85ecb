"""Health probes on plain containers, with a real agent, runc and busybox (Docker's behaviour:
health is reported, nothing is killed)."""

from __future__ import annotations

from typing import Any

from tests.support.agent import AgentProcess, wait_for


def _health(agent: AgentProcess, ref: str) -> dict[str, Any] | None:
    health: dict[str, Any] | None = agent.client().container_inspect(ref).model_dump()["health"]
    return health


def _run(agent: AgentProcess, name: str, *flags: str) -> None:
    agent.cli("container", "run", "-d", "--name", name, *flags, "busybox", "sleep", "300")


def _exec(agent: AgentProcess, ref: str, *args: str) -> None:
    chunks = list(agent.client().container_exec(ref, list(args), [], None, None))
    assert chunks[-1].exit_code == 0, chunks


def test_passing_and_failing_checks(agent: AgentProcess) -> None:
    _run(
        agent,
        "good",
        "--health-cmd",
        "test -e /etc/passwd && echo fine",
        "--health-interval",
        "200ms",
        "--health-retries",
        "2",
    )
    _run(
        agent,
        "bad",
        "--health-cmd",
        "echo broken >&2; exit 3",
        "--health-interval",
        "0.2s",
        "--health-retries",
        "2",
    )
    _run(agent, "plain")

    wait_for(lambda: (_health(agent, "good") or {}).get("status") == "healthy", what="good is healthy")
    wait_for(lambda: (_health(agent, "bad") or {}).get("status") == "unhealthy", what="bad is unhealthy")
    good, bad = _health(agent, "good"), _health(agent, "bad")
    assert good is not None and bad is not None
    assert good["failing_streak"] == 0 and good["log"][-1]["exit_code"] == 0
    assert good["log"][-1]["output"] == "fine\n"
    assert bad["failing_streak"] >= 2
    assert (bad["log"][-1]["exit_code"], bad["log"][-1]["output"]) == (3, "broken\n")
    assert _health(agent, "plain") is None

    # Docker's behaviour for plain containers: unhealthy is reported, the container keeps running.
    assert agent.state("bad")["status"] == "running"
    table = agent.cli("container", "ps").stdout
    rows = {line.split()[-1]: line for line in table.splitlines()[1:]}
    assert "(healthy)" in rows["good"] and "(unhealthy)" in rows["bad"]
    assert "health" not in rows["plain"] and "healthy" not in rows["plain"]

    # The log keeps Docker's last five results.
    wait_for(lambda: len((_health(agent, "bad") or {}).get("log", [])) == 5, what="five results")


def test_probe_timeout_counts_as_failure(agent: AgentProcess) -> None:
    _run(
        agent,
        "slow",
        "--health-cmd",
        "sleep 30",
        "--health-interval",
        "0.1s",
        "--health-timeout",
        "0.3s",
        "--health-retries",
        "1",
    )
    wait_for(lambda: (_health(agent, "slow") or {}).get("status") == "unhealthy", what="slow is unhealthy")
    wait_for(lambda: len((_health(agent, "slow") or {}).get("log", [])) >= 3, what="three timeouts")
    last = (_health(agent, "slow") or {})["log"][-1]
    assert last["exit_code"] == -1 and "exceeded timeout" in last["output"]
    # Each timed-out probe's process was killed in the container, not left behind.
    probes = [p.command for p in agent.client().container_top("slow") if p.command == "sleep 30"]
    assert len(probes) <= 1


def test_start_period_restart_and_agent_restart(agent: AgentProcess) -> None:
    # Failures during the start period do not count: the container stays "starting".
    _run(
        agent,
        "warm",
        "--health-cmd",
        "test -e /tmp/ready",
        "--health-interval",
        "0.1s",
        "--health-retries",
        "1",
        "--health-start-period",
        "60s",
    )
    wait_for(lambda: len((_health(agent, "warm") or {}).get("log", [])) >= 3, what="three probes")
    assert (_health(agent, "warm") or {})["status"] == "starting"
    assert "(health: starting)" in agent.cli("container", "ps").stdout
    _exec(agent, "warm", "touch", "/tmp/ready")
    wait_for(lambda: (_health(agent, "warm") or {}).get("status") == "healthy", what="warm is healthy")
    # Once healthy, failures count even within the start period (moby's rule).
    _exec(agent, "warm", "rm", "/tmp/ready")
    wait_for(lambda: (_health(agent, "warm") or {}).get("status") == "unhealthy", what="warm is unhealthy")

    # A new run starts over at "starting"; so does a restarted agent that adopts the container.
    agent.client().container_stop("warm", 0)
    agent.client().container_start("warm")
    wait_for(lambda: len((_health(agent, "warm") or {}).get("log", [])) >= 1, what="probing the new run")
    assert (_health(agent, "warm") or {})["status"] == "starting"
    agent.kill9()
    agent.start()
    # (/tmp/ready is gone, but the new run is still within its start period.)
    assert (_health(agent, "warm") or {}).get("status") == "starting"
    wait_for(lambda: len((_health(agent, "warm") or {}).get("log", [])) >= 1, what="probing again")
    _exec(agent, "warm", "touch", "/tmp/ready")
    wait_for(lambda: (_health(agent, "warm") or {}).get("status") == "healthy", what="healthy again")


def test_bad_flags_fail_before_the_agent(agent: AgentProcess) -> None:
    cases = [
        (["--health-interval", "5s"], "--health-interval"),
        (["--health-cmd", "true", "--no-healthcheck"], "--no-healthcheck"),
        (["--health-cmd", "true", "--health-retries", "0"], "--health-retries"),
        (["--health-cmd", "true", "--health-timeout", "0s"], "--health-timeout"),
        (["--health-cmd", "true", "--health-interval", "soon"], "--health-interval"),
    ]
    for flags, field in cases:
        result = agent.cli("container", "run", "-d", *flags, "busybox", "sleep", "1", check=False)
        assert result.returncode == 3, result.stderr
        assert field in result.stderr and "Traceback" not in result.stderr
    assert agent.cli("container", "ps", "-a", "-q").stdout.strip() == ""
