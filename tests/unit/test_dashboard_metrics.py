"""The Grafana dashboard and the alert rules only use metrics the daemons register, in PromQL that
promtool accepts; and the dashboard is a well-formed classic JSON model."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from agent.metrics import AgentMetrics
from controller.metrics import ControllerMetrics
from netplugin.metrics import NetpluginMetrics
from tests.support.metric_naming import Family, families
from tests.support.promql import (
    RATE_FUNCTIONS,
    SYNTHETIC,
    PromQLError,
    label_values_query,
    metric_names,
    selectors,
    substitute_variables,
)

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "shoal-dashboard.json"
RULES = ROOT / "deploy" / "prometheus" / "shoal.rules.yml"


def registered() -> dict[str, Family]:
    """Every sample name the three daemons expose, to its family: a counter's is its name (with
    `_total`), a histogram's are `_bucket`, `_sum` and `_count`, a gauge's is its name exactly."""
    out: dict[str, Family] = {}
    for registry in (ControllerMetrics().registry, AgentMetrics().registry, NetpluginMetrics().registry):
        for family in families(registry):
            if family.type == "histogram":
                out |= {family.name + s: family for s in ("_bucket", "_sum", "_count")}
            else:
                out[family.name] = family
    return out


def misuses(exprs: list[tuple[str, str]], samples: dict[str, Family]) -> list[tuple[str, str]]:
    """(where, why) for each name no daemon exposes, and each rate()/irate()/increase() of a
    series that is not a counter or a histogram's _bucket/_sum/_count."""
    out = []
    for where, expr in exprs:
        for name, function in selectors(expr):
            if name in SYNTHETIC:
                continue
            family = samples.get(name)
            if family is None:
                out.append((where, f"{name}: no daemon exposes it"))
            elif function in RATE_FUNCTIONS and family.type not in ("counter", "histogram"):
                out.append((where, f"{function}({name}): {name} is a {family.type}, not a counter"))
    return out


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
    assert selectors(
        "histogram_quantile(0.9, sum by (le) (rate(a_bucket[1m]))) / b + sum(increase((c[1m])))"
    ) == [
        ("a_bucket", "rate"),
        ("b", ""),
        ("c", ""),
    ]
    assert selectors("sum(x) by (node) * on (node) group_left max(y)") == [("x", "sum"), ("y", "max")]
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
        if section == "Service $service":
            assert all('service=~"$service"' in e for e in exprs), panel["title"]
        if section == "Node $node":
            assert all('node=~"$node"' in e for e in exprs), panel["title"]


def test_every_metric_in_the_dashboard_and_alerts_is_registered() -> None:
    samples = registered()
    assert samples["shoal_task_restarts_total"].type == "counter"
    assert (
        samples["shoal_node_ready"].type == "gauge" and "shoal_etcd_request_duration_seconds_count" in samples
    )
    variables = [label_values_query(v["query"]["query"])[0] for v in dashboard()["templating"]["list"][1:]]
    exprs = dashboard_exprs() + alert_exprs() + [("templating", name) for name in variables]
    assert misuses(exprs, samples) == []
    # And the other way round: every metric has a panel or an alert (a new metric needs one too).
    shown = {samples[name].name for _, expr in exprs for name in metric_names(expr) if name in samples}
    assert {f.name for f in samples.values()} - shown == {"shoal_build_info"}


def test_misused_or_misnamed_metrics_are_caught() -> None:
    """The check above can fail: a counter without `_total`, a gauge with it, rate() of a gauge."""
    bad = [
        ("a", "sum(shoal_task_restarts)"),
        ("b", "rate(shoal_node_ready[5m])"),
        ("c", "shoal_node_ready_total"),
        ("d", "sum(irate(shoal_service_running_tasks[5m]))"),
        ("e", "shoal_scheduling_duration_seconds"),
    ]
    good = [
        ("f", "sum(rate(shoal_task_restarts_total[5m])) + increase(shoal_image_pulls_total[1m])"),
        ("f2", "increase(shoal_scheduling_duration_seconds_count[1m])"),
        ("g", "histogram_quantile(0.99, sum by (le) (rate(shoal_scheduling_duration_seconds_bucket[5m])))"),
        ("h", "max_over_time(shoal_node_ready[5m]) and up"),
    ]
    assert [where for where, _ in misuses(bad + good, registered())] == ["a", "b", "c", "d", "e"]


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
