"""The agent's /metrics and `shoal stats` for real: etcd, a `shoal controller`, a real agent (runc,
busybox) with --metrics-address; series checked through promtool and by value, an in-place restart
seen in the counters, and `shoal stats` reading the node through the controller's node list."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
from pathlib import Path

from typer.testing import CliRunner, Result

from controller.client import ControlClient
from deploy.cli.main import app
from tests.support.agent import AgentProcess, wait_for
from tests.support.cluster import SHOAL, ControllerProcess
from tests.support.etcd import EtcdServer
from tests.support.metrics import Series, logged_url, parse, promtool_check, scrape, value, values
from tests.support.registry import Registry

NODE = "m2node"
SERVICE = "m2web"
LIMIT = 64 << 20


def cli(*args: str) -> Result:
    result = CliRunner().invoke(app, list(args))
    assert "Traceback" not in result.output
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


def read_line(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    """One line of the process's output, failing (not hanging) when none comes in time."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"no output within {timeout}s"
    return proc.stdout.readline()


def checked(url: str) -> Series:
    """Scrape, lint with promtool (must exit 0), parse."""
    text = scrape(url)
    lint = promtool_check(text)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    return parse(text)


def test_agent_metrics_and_cluster_stats(tmp_path: Path, registry: Registry) -> None:
    with EtcdServer(tmp_path / "etcd") as etcd, ControllerProcess(tmp_path, etcd.endpoint) as controller:
        base = tmp_path / "node"
        base.mkdir()
        args = ["--etcd", etcd.endpoint, "--node-id", NODE, "--stop-timeout", "1"]
        with AgentProcess(base, registry.host, [*args, "--metrics-address", "127.0.0.1:0"]) as agent:
            url = logged_url(agent.log_file, lambda: agent.proc is not None and agent.proc.poll() is None)
            with ControlClient(controller.target) as api:
                wait_for(lambda: any(n.ready for n in api.list_nodes()), what="the node to be ready")
                create = ["service", "--controller", controller.target, "create", "--name", SERVICE]
                cli(*create, "--replicas", "2", "--limit-memory", "64m", "busybox", "sleep", "600")
                tasks = [t for t in api.list_tasks(SERVICE) if t.state == "running"]
            assert len(tasks) == 2 and all(t.container_id for t in tasks)
            probe = ["--health-cmd", "true", "--health-interval", "0.2s"]
            plain = agent.cli(
                "container", "run", "-d", "--name", "m2plain", *probe, "busybox", "sleep", "600"
            )
            plain_id = plain.stdout.strip()

            s = checked(url)
            for t in tasks:
                labels = {"id": t.container_id, "service": SERVICE, "task": t.id}
                [(series_labels, limit)] = values(s, "shoal_container_memory_limit_bytes", **labels)
                assert limit == LIMIT
                info = agent.inspect(t.container_id)
                assert series_labels["name"] == info["name"] == f"{SERVICE}.{t.slot}.{t.id}"
                assert series_labels["image"] == info["image"]
                assert value(s, "shoal_container_pids", **labels) >= 1
                assert value(s, "shoal_container_restarts_total", **labels) == 0
                assert value(s, "shoal_container_start_time_seconds", **labels) > 1.7e9
                assert value(s, "shoal_container_cpu_usage_seconds_total", **labels) > 0
                assert value(s, "shoal_container_memory_working_set_bytes", **labels) > 0
            mine = {"id": plain_id, "name": "m2plain", "service": "", "task": ""}
            assert value(s, "shoal_container_memory_limit_bytes", **mine) == 0  # unlimited
            assert value(s, "shoal_container_network_receive_bytes_total", **mine) == 0  # network none
            assert value(s, "shoal_agent_containers", state="running") == 3
            assert value(s, "shoal_image_pulls_total", result="success") >= 1
            assert value(s, "shoal_image_pull_bytes_total") > 0
            assert value(s, "shoal_etcd_request_duration_seconds_count", operation="txn") > 0
            assert value(s, "shoal_build_info", component="agent") == 1
            wait_for(
                lambda: value(parse(scrape(url)), "shoal_health_checks_total", result="success") >= 1,
                what="a passing health probe to be counted",
            )

            # Kill the task's process from outside: restart policy "always" restarts it in place.
            victim = {"id": tasks[0].container_id, "service": SERVICE}
            started = value(s, "shoal_container_start_time_seconds", **victim)
            os.kill(agent.state(tasks[0].container_id)["pid"], signal.SIGKILL)

            def restarted() -> bool:
                found = values(parse(scrape(url)), "shoal_container_restarts_total", **victim)
                return bool(found) and found[0][1] == 1

            wait_for(restarted, timeout=20, what="shoal_container_restarts_total to count the restart")
            s = checked(url)
            assert value(s, "shoal_container_start_time_seconds", **victim) > started
            assert value(s, "shoal_container_restart_backoff_seconds_count") == 1

            # `shoal stats` finds the node through the controller and reads its agent.
            rows = json.loads(
                cli("stats", "--controller", controller.target, "--no-stream", "-o", "json").stdout
            )
            by_id = {r["id"]: r for r in rows}
            assert set(by_id) == {t.container_id for t in tasks} | {plain_id}
            for t in tasks:
                row = by_id[t.container_id]
                assert (row["node"], row["service"], row["task"]) == (NODE, SERVICE, t.id)
                assert row["memory_limit_bytes"] == LIMIT and row["pids"] >= 1 and row["cpu_percent"] >= 0
            assert by_id[plain_id]["memory_limit_bytes"] is None and by_id[plain_id]["service"] == ""
            table = cli(
                "stats", SERVICE, "--controller", controller.target, "--no-stream"
            ).stdout.splitlines()
            assert table[0].split()[:3] == ["CONTAINER", "ID", "NAME"] and "NET I/O" in table[0]
            assert len(table) == 3 and all(f"{NODE}" in line and "/ 64MiB" in line for line in table[1:])
            missing = CliRunner().invoke(
                app, ["stats", "nope", "--controller", controller.target, "--no-stream"]
            )
            assert missing.exit_code == 4 and missing.stderr.startswith("Error: ")

            # Streaming (not a terminal, -o json): one array per refresh until Ctrl-C.
            stream = subprocess.Popen(
                [SHOAL, "stats", SERVICE, "--controller", controller.target, "-o", "json"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                bufsize=0,  # unbuffered: readline never holds a line select() cannot see
            )
            try:
                snapshots = [json.loads(read_line(stream, 30)) for _ in range(2)]
                assert all({r["task"] for r in snap} == {t.id for t in tasks} for snap in snapshots)
                stream.send_signal(signal.SIGINT)
                assert stream.wait(timeout=10) == 130
            finally:
                if stream.poll() is None:
                    stream.kill()
                    stream.wait()
