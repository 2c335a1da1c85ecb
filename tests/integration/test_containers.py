"""Container lifecycle through the real CLI, agent, registry and runc."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.support.agent import AgentProcess, wait_for


def test_run_logs_inspect_stop_rm(agent: AgentProcess) -> None:
    cid = agent.cli(
        "container",
        "run",
        "-d",
        "--name",
        "web",
        "busybox",
        "sh",
        "-c",
        "echo hello; echo oops >&2; sleep 300",
    ).stdout.strip()
    assert len(cid) == 64
    wait_for(lambda: "hello" in agent.cli("container", "logs", "web").stdout, what="hello in logs")
    logs = agent.cli("container", "logs", "web")
    assert logs.stdout == "hello\n" and logs.stderr == "oops\n"

    info = agent.inspect("web")
    assert info["state"]["status"] == "running"
    pid = info["state"]["pid"]
    assert Path(f"/proc/{pid}").exists()
    assert info["args"] == ["sh", "-c", "echo hello; echo oops >&2; sleep 300"]
    assert "web" in agent.cli("container", "ps").stdout
    assert json.loads(agent.cli("container", "ps", "-o", "json").stdout)[0]["name"] == "web"

    # sh as pid 1 ignores SIGTERM, so stop escalates to SIGKILL after the grace period.
    agent.cli("container", "stop", "-t", "1", "web")
    info = agent.inspect("web")
    assert info["state"]["status"] == "exited" and info["state"]["exit_code"] == 137
    assert not Path(f"/proc/{pid}").exists()
    assert "web" not in agent.cli("container", "ps").stdout
    assert "web" in agent.cli("container", "ps", "-a").stdout

    agent.cli("container", "rm", "web")
    assert agent.cli("container", "inspect", "web", check=False).returncode == 4
    assert not (agent.state_dir / "containers" / cid).exists()
    assert cid not in Path("/proc/self/mountinfo").read_text()


def test_rm_running_needs_force(agent: AgentProcess) -> None:
    agent.cli("container", "run", "-d", "--name", "busy", "busybox", "sleep", "300")
    refused = agent.cli("container", "rm", "busy", check=False)
    assert refused.returncode == 1 and "stop it first" in refused.stderr
    agent.cli("container", "rm", "-f", "busy")
    assert agent.cli("container", "ps", "-a", "-q").stdout.strip() == ""


def test_exec_propagates_exit_code(agent: AgentProcess) -> None:
    agent.cli("container", "run", "-d", "--name", "ex", "-e", "GREETING=hi", "busybox", "sleep", "300")
    result = agent.cli(
        "container", "exec", "ex", "sh", "-c", "echo $GREETING; echo bad >&2; exit 7", check=False
    )
    assert result.returncode == 7
    assert result.stdout == "hi\n" and result.stderr == "bad\n"
    top = agent.cli("container", "top", "ex").stdout
    assert "sleep 300" in top


def test_foreground_run_exits_with_container_code(agent: AgentProcess) -> None:
    result = agent.cli("container", "run", "busybox", "sh", "-c", "echo out; exit 5", check=False)
    assert result.returncode == 5 and "out" in result.stdout


def test_diff_and_commit(agent: AgentProcess) -> None:
    agent.cli(
        "container",
        "run",
        "-d",
        "--name",
        "chg",
        "busybox",
        "sh",
        "-c",
        "echo data > /newfile; rm /etc/group; echo x >> /etc/passwd; sleep 300",
    )
    wait_for(lambda: "A /newfile" in agent.cli("container", "diff", "chg").stdout, what="diff")
    diff = agent.cli("container", "diff", "chg").stdout.splitlines()
    assert {"A /newfile", "D /etc/group", "C /etc/passwd", "C /etc"} <= set(diff)

    agent.cli("container", "commit", "chg", "snap:v1")
    assert "snap" in agent.cli("image", "ls").stdout
    out = agent.cli("container", "run", "--name", "from-snap", "snap:v1", "sh", "-c", "cat /newfile; ls /etc")
    assert out.stdout.startswith("data\n") and "group" not in out.stdout
    # an image in use cannot be removed
    assert agent.cli("image", "rm", "snap:v1", check=False).returncode == 1


def test_bad_input_is_refused_and_leaves_nothing(agent: AgentProcess, tmp_path: Path) -> None:
    cases = [
        (["--memory", "-5"], 3),
        (["--restart", "sometimes"], 3),
        (["--name", "bad name!"], 3),
        (["-v", f"{tmp_path}/binds/../etc:/x"], 3),
        (["-v", "/etc:/host-etc"], 3),
        (["--privileged"], 3),
        (["--network", "host"], 3),
        (["--network", "bridge"], 3),  # this agent has no bridge network
        (["-p", "8080:80"], 3),  # so nothing can be published either
    ]
    for flags, code in cases:
        result = agent.cli("container", "run", "-d", *flags, "busybox", "true", check=False)
        assert result.returncode == code, (flags, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    missing = agent.cli("container", "run", "-d", "no-such-image:nope", "true", check=False)
    assert missing.returncode == 4 and "Traceback" not in missing.stderr
    agent.cli("container", "run", "-d", "--name", "taken", "busybox", "sleep", "300")
    dup = agent.cli("container", "run", "-d", "--name", "taken", "busybox", "true", check=False)
    assert dup.returncode == 1 and "already in use" in dup.stderr
    down = agent.cli("image", "pull", "127.0.0.1:1/busybox:latest", check=False)
    assert down.returncode == 1 and "unreachable" in down.stderr
    assert agent.cli("container", "ps", "-a", "-q").stdout.split() == [agent.inspect("taken")["id"][:12]]
    assert len(os.listdir(agent.state_dir / "containers")) == 1


def test_image_config_is_honoured(agent: AgentProcess, tmp_path: Path) -> None:
    # Build an image whose config has Entrypoint, Cmd, Env, WorkingDir and User via commit.
    agent.cli("container", "run", "--name", "base", "busybox", "mkdir", "-p", "/srv/app")
    agent.cli("container", "commit", "base", "cfg:1")
    out = agent.cli(
        "container",
        "run",
        "-e",
        "FOO=bar",
        "-w",
        "/srv/app",
        "-u",
        "nobody",
        "cfg:1",
        "sh",
        "-c",
        "echo $FOO; pwd; id -u",
    ).stdout
    assert out.split() == ["bar", "/srv/app", "65534"]
    ep = agent.cli("container", "run", "--entrypoint", "echo", "cfg:1", "a", "b").stdout
    assert ep == "a b\n"


def test_kill_sends_only_the_signal(agent: AgentProcess) -> None:
    agent.cli(
        "container", "run", "-d", "--name", "trapper", "--restart", "always", "busybox",
        "sh", "-c", "trap 'echo got TERM; exit 0' TERM; while true; do sleep 0.1; done",
    )  # fmt: skip
    agent.cli("container", "kill", "-s", "TERM", "trapper")
    wait_for(lambda: agent.state("trapper")["status"] == "exited", what="exit after TERM")
    state = agent.inspect("trapper")["state"]
    assert state["exit_code"] == 0 and "got TERM" in agent.cli("container", "logs", "trapper").stdout
    assert state["restart_count"] == 0, "killing with the stop signal counts as a manual stop"
