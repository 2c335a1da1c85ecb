"""End to end: `shoal lab up --with-prometheus` runs a real Prometheus that scrapes every daemon of a
real 3-node lab; a service's tasks and a container crash show up in its query API; every dashboard
expression runs; `lab down` removes Prometheus with the rest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from agent.client import AgentClient
from controller.api.types import ServiceSpec
from controller.client import ControlClient
from deploy.lab import lab as lab_impl
from deploy.lab import procs
from deploy.lab.netns import names_in_use
from deploy.lab.state import load_state
from tests.support.agent import wait_for
from tests.support.labcli import LabCli, lab_cli
from tests.support.promql import substitute_variables

PROMTOOL = "/usr/bin/promtool"
DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "shoal-dashboard.json"
ALERTS = {
    "ShoalServiceReplicasMismatch",
    "ShoalNodeDown",
    "ShoalTaskCrashLooping",
    "ShoalSchedulingFailures",
    "ShoalLeaderMissing",
}
# Loopback only: no proxy from the environment may see these requests.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url: str) -> bytes:
    with _OPENER.open(url, timeout=5) as resp:
        body: bytes = resp.read()
        return body


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        reply = json.loads(http_get(f"{self.url}/api/v1/{path}{query}"))
        assert reply["status"] == "success", reply
        return reply["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        result: list[dict[str, Any]] = data["result"]
        return result

    def value(self, expr: str) -> float | None:
        """The single value `expr` evaluates to now; None while it has no series."""
        result = self.query(expr)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def targets(self) -> dict[tuple[str, str], str]:
        """(job, scrape URL) -> health of every active target."""
        return {
            (t["labels"]["job"], t["scrapeUrl"]): t["health"] for t in self.api("targets")["activeTargets"]
        }


def dashboard_exprs() -> list[str]:
    data = json.loads(DASHBOARD.read_text())
    every = [p for row in data["panels"] for p in (row, *row.get("panels", []))]
    return [t["expr"] for p in every for t in p.get("targets", [])]


def test_prometheus_scrapes_the_lab(tmp_path: Path) -> None:
    with lab_cli(tmp_path) as lab:
        _scrape_the_lab(lab)


def _scrape_the_lab(lab: LabCli) -> None:
    out = lab("up", "--nodes", "3", "--with-prometheus").stdout
    assert "lab is up: 3 node(s)" in out
    info = lab.status()
    assert info["prometheus"]["pid"] and out.strip().endswith(f"prometheus: {info['prometheus']['url']}")
    prom = Prometheus(info["prometheus"]["url"])

    # Every daemon is a target with the catalog's job and labels, and is up.
    urls = {("shoal-controller", c["metrics_url"]) for c in info["controllers"]}
    urls |= {("shoal-agent", n["metrics_url"]) for n in info["nodes"]}
    urls |= {("shoal-netplugin", n["netplugin_metrics_url"]) for n in info["nodes"]}
    assert len(urls) == 7 and all(url.startswith("http://127.0.0.1:") for _, url in urls)
    wait_for(
        lambda: prom.targets() == dict.fromkeys(urls, "up"), timeout=30, interval=0.2, what="all 7 targets up"
    )
    up = {(s["metric"]["job"], s["metric"]["instance"]): s["value"][1] for s in prom.query("up")}
    assert len(up) == 7 and set(up.values()) == {"1"}
    nodes = {s["metric"]["node"] for s in prom.query('up{job=~"shoal-agent|shoal-netplugin"}')}
    assert nodes == {"node1", "node2", "node3"}
    assert {s["metric"]["controller"] for s in prom.query('up{job="shoal-controller"}')} == {"ctl1"}

    # What each daemon exposes passes promtool's own lint.
    for _, url in sorted(urls):
        check = subprocess.run(
            [PROMTOOL, "check", "metrics"], input=http_get(url), capture_output=True, timeout=30
        )
        assert check.returncode == 0, f"{url}: {check.stdout.decode()}{check.stderr.decode()}"

    # The alert rules are loaded and evaluate without errors; with one leader, it is not missing.
    rules = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
    assert {r["name"] for r in rules} == ALERTS
    wait_for(lambda: all(r["health"] == "ok" for g in prom.api("rules")["groups"] for r in g["rules"]))
    assert prom.value("sum(shoal_controller_leader)") == 1

    # A 3-replica service: the leader's gauges, scraped, say 3 running of 3 desired.
    service = f"web{uuid.uuid4().hex[:4]}"
    with ControlClient(info["controllers"][0]["address"]) as client:
        spec = ServiceSpec(name=service, image="busybox", replicas=3, command=["sleep", "1000000"])
        client.create_service(spec)
        running = f'sum(shoal_service_running_tasks{{service="{service}"}})'
        wait_for(
            lambda: prom.value(running) == 3, timeout=30, interval=0.2, what="3 running tasks in Prometheus"
        )
        assert prom.value(f'sum(shoal_service_desired_tasks{{service="{service}"}})') == 3
        # Agents are scraped on their own schedule: their per-container series may come a beat later.
        containers = f'count(shoal_container_cpu_usage_seconds_total{{service="{service}"}})'
        wait_for(lambda: prom.value(containers) == 3, timeout=10, interval=0.2, what="3 containers scraped")
        assert prom.value('sum(shoal_node_ready{node=~"node[123]"})') == 3
        task = next(t for t in client.list_tasks(service) if t.state == "running")

    # Every dashboard expression is accepted by the real Prometheus (variables filled in).
    for expr in dashboard_exprs():
        prom.query(substitute_variables(expr, {"service": service}))

    # The task's container crashes (its main process is killed): the agent restarts it in place
    # and the restart reaches Prometheus, per container and per service.
    node = next(n for n in info["nodes"] if n["name"] == task.node_id)
    with AgentClient(Path(node["agent_api"].removeprefix("unix://"))) as agent:
        pid = agent.container_inspect(task.container_id).state.pid
    # Only that container's process: it sits in the container's cgroup under the lab node's parent.
    assert f"/{lab.prefix}-{task.node_id}/{task.container_id}" in Path(f"/proc/{pid}/cgroup").read_text()
    restarts = f'shoal_container_restarts_total{{task="{task.id}"}}'
    wait_for(lambda: prom.value(restarts) == 0, timeout=10, interval=0.2, what="the container scraped")
    os.kill(pid, signal.SIGKILL)
    wait_for(
        lambda: (prom.value(restarts) or 0) >= 1, timeout=30, interval=0.2, what="the restart in Prometheus"
    )
    per_service = f'sum(shoal_task_restarts_total{{service="{service}"}})'
    wait_for(lambda: (prom.value(per_service) or 0) >= 1, timeout=30, interval=0.2, what="the task restart")

    # A lab whose Prometheus died gets it back from `lab up --with-prometheus`, the lab untouched.
    state = load_state(lab.state_dir)
    assert state is not None and state.prometheus.proc is not None
    procs.kill9(state.prometheus.proc)
    assert lab.status()["prometheus"]["pid"] is None
    out = lab("up", "--with-prometheus").stdout
    assert "was already up" in out and "prometheus: http://127.0.0.1:" in out
    again = lab.status()
    assert again["prometheus"]["pid"] and again["controllers"] == info["controllers"]
    assert Prometheus(again["prometheus"]["url"]).api("status/config")["yaml"]

    # down: Prometheus goes with the rest, and nothing of the lab remains.
    state = load_state(lab.state_dir)
    assert state is not None and state.prometheus.proc is not None
    assert lab("down").stdout.strip() == "lab removed"
    assert not procs.alive(state.prometheus.proc)
    assert lab_impl.leftovers(state) == []
    assert names_in_use(lab.prefix) == []
    assert not lab.state_dir.exists() and not lab.run_dir.exists()
