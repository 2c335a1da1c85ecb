"""`shoal container ...` against the fake agent of test_api_roundtrip, over a real socket."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from deploy.cli.main import app
from tests.unit.test_api_roundtrip import Served, serve_fake

SHOAL = str(Path(sys.executable).parent / "shoal")


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Served]:
    with serve_fake(tmp_path) as served:
        yield served


def shoal(host: str, *args: str) -> Result:
    result = CliRunner().invoke(app, ["--host", host, *args])
    assert "Traceback" not in result.output
    # nothing escaped the CLI's error handling: only clean exits
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def one_error_line(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def test_run_detached_prints_the_id_and_sends_the_request(agent: Served) -> None:
    result = shoal(
        agent.host,
        "container",
        "run",
        "-d",
        "--name",
        "web",
        "-e",
        "A=1",
        "--memory",
        "512m",
        "--cpus",
        "1.5",
        "--pids-limit",
        "64",
        "--restart",
        "on-failure:3",
        "-v",
        "data:/data:ro",
        "--tmpfs",
        "/scratch",
        "--mount",
        "type=bind,source=/srv,target=/srv,readonly",
        "-l",
        "tier=web",
        "--stop-timeout",
        "3",
        "busybox",
        "sh",
        "-c",
        "echo hi; exec sleep 300",
    )
    assert result.exit_code == 0, result.output
    cid = result.stdout.strip()
    assert len(cid) == 64 and cid in agent.fake.containers
    name, call = agent.fake.last()
    req = call["req"]
    assert name == "container_run" and call["start"] is True
    # everything after IMAGE is the command, options-lookalikes included
    assert req.command == ["sh", "-c", "echo hi; exec sleep 300"]
    assert (req.name, req.env, req.labels, req.stop_timeout) == ("web", ["A=1"], {"tier": "web"}, 3.0)
    assert (req.resources.memory_bytes, req.resources.nano_cpus, req.resources.pids_limit) == (
        512 << 20,
        1_500_000_000,
        64,
    )
    assert (req.restart.name, req.restart.max_retries) == ("on-failure", 3)
    assert [(m.type, m.source, m.target, m.read_only) for m in req.mounts] == [
        ("volume", "data", "/data", True),
        ("tmpfs", "", "/scratch", False),
        ("bind", "/srv", "/srv", True),
    ]


def test_create_does_not_start(agent: Served) -> None:
    result = shoal(agent.host, "container", "create", "--entrypoint", "", "busybox")
    assert result.exit_code == 0
    assert agent.fake.last()[1]["start"] is False
    assert agent.fake.last()[1]["req"].entrypoint == []
    assert shoal(agent.host, "container", "create", "-d", "busybox").exit_code == 2  # no -d on create


def test_ps_table_json_and_quiet(agent: Served) -> None:
    cid = shoal(
        agent.host, "container", "run", "-d", "--name", "web", "busybox", "sleep", "300"
    ).stdout.strip()
    shoal(agent.host, "container", "create", "--name", "idle", "busybox")
    table = shoal(agent.host, "container", "ps").stdout.splitlines()
    assert table[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES"]
    assert len(table) == 2 and table[1].startswith(cid[:12] + " ")
    assert '"sleep 300"' in table[1] and " Up " in table[1] and table[1].endswith("web")

    everything = shoal(agent.host, "container", "ps", "-a").stdout
    assert "idle" in everything and "Created" in everything
    data = json.loads(shoal(agent.host, "container", "ps", "-a", "-o", "json").stdout)
    assert {c["name"] for c in data} == {"web", "idle"}
    assert data[0].keys() >= {"id", "name", "state", "config", "args", "mounts"}
    quiet = shoal(agent.host, "container", "ps", "-q").stdout.split()
    assert quiet == [cid[:12]]


@pytest.mark.parametrize(
    "flags",
    [
        ["--memory", "-5"],
        ["--memory", "1k"],
        ["--restart", "sometimes"],
        ["--cpus", "0"],
        ["--pids-limit", "many"],
        ["--name", "bad name!"],
        ["-v", "/a/../b:/x"],
        ["-v", "./rel:/x"],
        ["-v", "data:relative"],
        ["--tmpfs", "tmp"],
        ["--mount", "type=bind,target=/x"],
        ["--mount", "type=nfs,source=a,target=/x"],
        ["-e", "1BAD=x"],
        ["--network", "overlay"],
        ["-p", "80"],
        ["-p", "8080:80/sctp"],
        ["-p", "8080:80", "-p", "8080:81"],
        ["--stop-signal", "SIGNOPE"],
        ["-w", "relative/dir"],
        ["--env-file", "/nonexistent/env"],
    ],
)
def test_bad_run_flags_exit_3_before_contacting_the_agent(agent: Served, flags: list[str]) -> None:
    result = shoal(agent.host, "container", "run", "-d", *flags, "busybox", "true")
    assert result.exit_code == 3, result.output
    assert one_error_line(result).startswith("Error: invalid ")
    assert agent.fake.calls == []


def test_a_plain_name_is_a_named_volume(agent: Served) -> None:
    assert shoal(agent.host, "container", "run", "-d", "-v", "rel:/x", "busybox").exit_code == 0
    assert agent.fake.last()[1]["req"].mounts[0].type == "volume"


def test_bad_input_fails_even_without_an_agent(tmp_path: Path) -> None:
    result = shoal(f"unix://{tmp_path}/none.sock", "container", "run", "--memory", "-5", "busybox")
    assert result.exit_code == 3
    assert one_error_line(result) == (
        "Error: invalid --memory '-5': expected a positive size like 512m, 1g or 1048576"
    )


def test_other_bad_values_exit_3(agent: Served) -> None:
    for args in (
        ["container", "logs", "--since", "yesterday", "c"],
        ["container", "logs", "--tail", "-1", "c"],
        ["container", "kill", "-s", "NOPE", "c"],
        ["container", "stop", "-t", "-1", "c"],
        ["container", "exec", "-e", "=x", "c", "true"],
    ):
        result = shoal(agent.host, *args)
        assert result.exit_code == 3, (args, result.output)
        one_error_line(result)
    assert agent.fake.calls == []


def test_not_found_exits_4(agent: Served) -> None:
    for args in (
        ["container", "inspect", "nope"],
        ["container", "logs", "nope"],
        ["container", "exec", "nope", "true"],
        ["container", "stop", "nope"],
        ["container", "run", "-d", "missing:1"],
    ):
        result = shoal(agent.host, *args)
        assert result.exit_code == 4, (args, result.output)
        assert "No such" in one_error_line(result)


def test_conflict_exits_1_and_multi_target_commands_go_on(agent: Served) -> None:
    shoal(agent.host, "container", "run", "-d", "--name", "a", "busybox")
    shoal(agent.host, "container", "run", "-d", "--name", "b", "busybox")
    result = shoal(agent.host, "container", "rm", "nope", "a", "b")
    assert result.exit_code == 4  # the first failure's code
    assert result.stderr.count("Error: ") == 3  # nope: not found; a and b: running
    result = shoal(agent.host, "container", "rm", "-f", "a", "b")
    assert result.exit_code == 0 and result.stdout.split() == ["a", "b"]


def test_exec_propagates_the_exit_code_and_streams(agent: Served) -> None:
    shoal(agent.host, "container", "run", "-d", "--name", "ex", "busybox")
    result = shoal(agent.host, "container", "exec", "-e", "G=hi", "-w", "/tmp", "ex", "exit", "7")
    assert result.exit_code == 7
    assert result.stdout == "exit 7\n" and result.stderr == "G=hi\n"
    assert agent.fake.last() == (
        "container_exec",
        {"ref": "ex", "args": ["exit", "7"], "env": ["G=hi"], "workdir": "/tmp", "user": None},
    )
    ok = shoal(agent.host, "container", "exec", "ex", "sh", "-c", "true")
    assert ok.exit_code == 0 and ok.stdout == "sh -c true\n"


def test_foreground_run_streams_and_exits_with_the_container_code(agent: Served) -> None:
    result = shoal(agent.host, "container", "run", "-l", "exit=5", "busybox", "sh", "-c", "exit 5")
    assert result.exit_code == 5
    assert result.stdout == "hello\nbye\n" and result.stderr == "oops\n"


def test_logs_split_streams_timestamps_since_and_tail(agent: Served) -> None:
    shoal(agent.host, "container", "run", "-d", "--name", "c", "busybox")
    result = shoal(agent.host, "container", "logs", "c")
    assert result.exit_code == 0 and result.stdout == "hello\nbye\n" and result.stderr == "oops\n"
    stamped = shoal(agent.host, "container", "logs", "-t", "--tail", "1", "c").stdout
    assert stamped == "2026-01-02T03:04:05.123456789Z bye\n"
    shoal(agent.host, "container", "logs", "--since", "10m", "c")
    since = agent.fake.last()[1]["since"]
    assert abs(since - (time.time() - 600)) < 5
    shoal(agent.host, "container", "logs", "--since", "2026-01-02T03:04:05Z", "c")
    assert agent.fake.last()[1]["since"] == 1767323045.0
    shoal(agent.host, "container", "logs", "--since", "1767323045.5", "c")
    assert agent.fake.last()[1]["since"] == 1767323045.5


def test_inspect_stats_top_diff_commit(agent: Served) -> None:
    cid = shoal(agent.host, "container", "run", "-d", "--name", "c", "busybox").stdout.strip()
    data = json.loads(shoal(agent.host, "container", "inspect", "c").stdout)
    assert data["id"] == cid and data["state"]["status"] == "running"

    stats = shoal(agent.host, "container", "stats", "--no-stream").stdout.splitlines()
    assert stats[0].split()[:3] == ["CONTAINER", "ID", "NAME"]
    assert stats[1].split()[:3] == [cid[:12], "c", "1.25s"] and "3MiB / unlimited" in stats[1]
    assert json.loads(shoal(agent.host, "container", "stats", "-o", "json", "c").stdout)[0]["pids"] == 2

    assert "4242" in shoal(agent.host, "container", "top", "c").stdout
    assert shoal(agent.host, "container", "diff", "c").stdout == "A /newfile\nD /etc/group\n"
    assert shoal(agent.host, "container", "commit", "c", "snap:v1").stdout.strip() == "sha256:" + "2" * 64
    assert agent.fake.last() == ("container_commit", {"ref": "c", "repo_tag": "snap:v1"})


def test_agent_error_exit_code_is_kept(agent: Served) -> None:
    result = shoal(agent.host, "container", "stop", "-t", "2", "slow")
    assert result.exit_code == 124
    assert one_error_line(result) == "Error: container slow did not stop within 2.0s"


def test_agent_bug_is_one_line_exit_1(agent: Served) -> None:
    result = shoal(agent.host, "container", "inspect", "boom")
    assert result.exit_code == 1
    assert "kaboom" in one_error_line(result)


def test_no_agent_is_a_clear_error(tmp_path: Path) -> None:
    result = shoal(f"unix://{tmp_path}/agent.sock", "container", "ps")
    assert result.exit_code == 1
    assert one_error_line(result) == (
        f"Error: cannot reach the agent at unix://{tmp_path}/agent.sock: is `shoal agent` running?"
    )


def test_usage_errors_exit_2(agent: Served) -> None:
    assert shoal(agent.host, "container", "ps", "--bogus").exit_code == 2
    assert shoal(agent.host, "container", "run").exit_code == 2
    assert shoal(agent.host, "nosuch").exit_code == 2
    assert shoal("tcp://1.2.3.4:5", "container", "ps").exit_code == 3
    assert agent.fake.calls == []


def test_console_script_end_to_end(agent: Served) -> None:
    env_host = {"SHOAL_AGENT_HOST": agent.host, "PATH": "/usr/bin:/bin"}
    run = subprocess.run(
        [SHOAL, "container", "run", "-d", "busybox", "sh", "-c", "x"],
        capture_output=True,
        text=True,
        env=env_host,
    )
    assert run.returncode == 0 and len(run.stdout.strip()) == 64, run.stderr
    bad = subprocess.run(
        [SHOAL, "container", "run", "--cpus", "0", "busybox"], capture_output=True, text=True, env=env_host
    )
    assert bad.returncode == 3 and bad.stdout == ""
    assert bad.stderr == "Error: invalid --cpus '0': must be greater than zero\n"
