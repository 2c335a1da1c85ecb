"""`shoal controller`: flags build the ControllerConfig; bad values are one line and exit 3."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from controller.config import ControllerConfig
from deploy.cli.main import app


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["controller", *args])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stderr


def test_flags_build_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[ControllerConfig] = []
    monkeypatch.setattr("controller.daemon.run", seen.append)
    code, _ = invoke(
        "--etcd",
        "http://127.0.0.1:2379, 127.0.0.2:2379",
        "--listen",
        "unix:/run/shoal/ctl.sock",
        "--id",
        "ctl-1",
        "--leader-ttl",
        "3",
        "--node-grace",
        "0",
        "--max-lost-nodes",
        "2",
        "--history",
        "0",
    )
    assert code == 0
    [config] = seen
    assert config.etcd_endpoints == ("http://127.0.0.1:2379", "127.0.0.2:2379")
    assert (config.listen, config.controller_id, config.leader_ttl) == (
        "unix:/run/shoal/ctl.sock",
        "ctl-1",
        3.0,
    )
    settings = config.reconcile_settings()
    assert (settings.node_down_grace, settings.max_lost_nodes_per_pass, settings.task_history_limit) == (
        0,
        2,
        0,
    )


def test_defaults_name_the_controller_after_host_and_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[ControllerConfig] = []
    monkeypatch.setattr("controller.daemon.run", seen.append)
    assert invoke()[0] == 0
    [config] = seen
    assert config.controller_id.endswith(f"-{os.getpid()}")
    assert (config.leader_ttl, config.node_down_grace, config.task_history_limit) == (2.0, 5.0, 5)


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--leader-ttl", "0.5", "invalid --leader-ttl 0.5: must be at least 1 second"),
        ("--node-grace", "-1", "invalid --node-grace -1.0: must be zero or more seconds"),
        ("--max-lost-nodes", "0", "invalid --max-lost-nodes 0: must be at least 1"),
        ("--history", "-2", "invalid --history -2: must be zero or more"),
        ("--id", "a/b", "invalid --id 'a/b': must be non-empty printable text without '/'"),
        ("--id", "", "invalid --id '': must be non-empty"),
        ("--listen", "localhost", "invalid --listen 'localhost': expected HOST:PORT"),
        ("--listen", "unix:relative.sock", "invalid --listen 'unix:relative.sock': expected unix:/absolute"),
        ("--etcd", "127.0.0.1:0", "invalid --etcd '127.0.0.1:0': expected HOST:PORT with a port 1-65535"),
        ("--etcd", " , ", "invalid --etcd '': at least one endpoint is required"),
    ],
)
def test_bad_flags_are_one_line_and_exit_3(
    monkeypatch: pytest.MonkeyPatch, flag: str, value: str, message: str
) -> None:
    monkeypatch.setattr("controller.daemon.run", lambda config: pytest.fail("the daemon must not start"))
    code, stderr = invoke(flag, value)
    lines = stderr.strip().splitlines()
    assert code == 3 and len(lines) == 1 and lines[0].startswith(f"Error: {message}"), stderr
