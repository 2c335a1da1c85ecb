"""The Grafana dashboard and the alert rules only use metrics the daemons register, in PromQL that
promtool accepts; and the dashboard is a well-formed classic JSON model."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from agent.metrics import metric_names as agent_metric_names
from controller.metrics import metric_names as controller_metric_names
from netplugin.metrics import metric_names as netplugin_metric_names
from tests.support.promql import (
    SYNTHETIC,
    PromQLError,
    family_name,
    label_values_query,
    metric_names,
    substitute_variables,
)

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "shoal-dashboard.json"
RULES = ROOT / "deploy" / "prometheus" / "shoal.rules.yml"


def registered() -> set[str]:
    """Family names of everything the three daemons register (counters without `_total`)."""
    names = controller_metric_names() | agent_metric_names() | netplugin_metric_names()
    return {family_name(n) for n in names}


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    out = []
    for panel in data["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def dashboard_exprs() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in panels(dashboard()) for t in p.get("targets", [])]


def alert_exprs() -> list[tuple[str, str]]:
    groups = YAML(typ="safe", pure=True).load(RULES.read_text())["groups"]
    return [(r["alert"], r["expr"]) for g in groups for r in g["rules"]]


def test_metric_names_reads_promql() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, node) (rate(shoal_sync_seconds_bucket{node=~"$node", '
        'kind!="x"}[$__rate_interval]))) / ignoring (kind) group_left (node) shoal_leases offset 5m '
        "and on (node) sum without (instance) (shoal_a) > bool 1e3 or vector(0) unless count(up)"
    )
    assert metric_names(expr) == {"shoal_sync_seconds_bucket", "shoal_leases", "shoal_a", "up"}
    assert metric_names("topk(3, max_over_time(shoal_x[5m:1m])) * -Inf") == {"shoal_x"}
    assert metric_names('{__name__="shoal_y"}') == set()  # a selector without a name names none
    assert family_name("shoal_a_seconds_bucket") == "shoal_a_seconds"
    assert family_name("shoal_pulls_total") == "shoal_pulls"
    assert label_values_query("label_values(shoal_node_ready, node)") == ("shoal_node_ready", "node")
    assert substitute_variables('rate(x{service=~"${service}"}[$__rate_interval])') == (
        'rate(x{service=~"web"}[1m])'
    )
    with pytest.raises(PromQLError, match=r"\$nope"):
        substitute_variables("x{a=~'$nope'}")
    with pytest.raises(PromQLError, match="unbalanced"):
        metric_names("sum(x{a='b'")


def test_the_dashboard_is_a_classic_json_model() -> None:
    data = dashboard()
    assert 27 <= data["schemaVersion"] <= 39
    assert data["uid"] and data["title"]
    variables = {v["name"]: v for v in data["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert label_values_query(variables["service"]["query"]["query"])[1] == "service"
    assert label_values_query(variables["node"]["query"]["query"])[1] == "node"
    every = panels(data)
    assert len({p["id"] for p in every}) == len(every)
    rows = [p["title"] for p in every if p["type"] == "row"]
    assert rows == ["Cluster overview", "Service $service", "Node $node"]
    for panel in every:
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        assert all(t["expr"].strip() and t["refId"] for t in panel["targets"]), panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
    titles = {p["title"] for p in every}
    wanted = {
        "Tasks desired vs running",
        "Nodes ready",
        "Leader",
        "Scheduling latency p99 (created → assigned)",
        "Reconcile duration p99 and queue",
        "etcd request latency p99",
        "Running / healthy / desired",
        "Container CPU by task",
        "Container memory (working set) by task",
        "CPU allocatable vs reserved",
        "Memory allocatable vs reserved",
        "Containers by state",
        "Network plugin: leases and addresses",
        "Network plugin: syncs and repairs",
    }
    assert wanted <= titles, wanted - titles


def test_the_per_service_and_per_node_panels_filter_by_their_variable() -> None:
    section = ""
    for panel in panels(dashboard()):
        if panel["type"] == "row":
            section = panel["title"]
            continue
        exprs = [t["expr"] for t in panel["targets"]]
        if section == "Service $service" and panel["title"] != "Health checks":
            assert all('service=~"$service"' in e for e in exprs), panel["title"]
        if section == "Node $node":
            assert all('node=~"$node"' in e for e in exprs), panel["title"]


def test_every_metric_in_the_dashboard_and_alerts_is_registered() -> None:
    known = registered()
    assert "shoal_service_running_tasks" in known and "shoal_netplugin_leases" in known
    variables = [label_values_query(v["query"]["query"])[0] for v in dashboard()["templating"]["list"][1:]]
    used = {(where, name) for where, expr in dashboard_exprs() + alert_exprs() for name in metric_names(expr)}
    used |= {("templating", name) for name in variables}
    unknown = sorted((where, name) for where, name in used if family_name(name) not in known | SYNTHETIC)
    assert unknown == []
    # And the other way round: every metric has a panel or an alert (a new metric needs one too).
    shown = {family_name(name) for _, name in used}
    assert known - shown == {"shoal_build_info"}


def test_every_expression_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each one (as a recording rule, Grafana variables filled in)."""
    exprs = dashboard_exprs()
    rules = [
        {"record": f"dashboard:expr_{i}", "expr": substitute_variables(e)} for i, (_, e) in enumerate(exprs)
    ]
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        ["/usr/bin/promtool", "check", "rules", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout


def test_promtool_rejects_a_broken_expression(tmp_path: Path) -> None:
    """The check above can fail."""
    path = tmp_path / "bad.rules.yml"
    rule = {"record": "dashboard:bad", "expr": "sum by (le (rate(shoal_x[1m]))"}
    path.write_text(json.dumps({"groups": [{"name": "bad", "rules": [rule]}]}))
    result = subprocess.run(
        ["/usr/bin/promtool", "check", "rules", str(path)], capture_output=True, text=True
    )
    assert result.returncode != 0
