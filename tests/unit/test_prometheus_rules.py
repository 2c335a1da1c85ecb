"""Shoal's alert rules and Prometheus configs, checked by the real promtool: the rules load, their
unit tests (deploy/prometheus/shoal.rules.test.yml) pass, every alert is tested firing and quiet,
and the example config and the lab's generated config are valid and come from the same code."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from deploy.lab import prometheus
from deploy.lab.state import ControllerState, LabState, NodeState

PROMTOOL = "/usr/bin/promtool"
RULES_DIR = prometheus.RULES_DIR
ALERTS = {
    "ShoalServiceReplicasMismatch",
    "ShoalNodeDown",
    "ShoalTaskCrashLooping",
    "ShoalSchedulingFailures",
    "ShoalLeaderMissing",
}


def promtool(*args: str, cwd: Path = RULES_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, cwd=cwd, timeout=60)


def load(path: Path) -> Any:
    return YAML(typ="safe", pure=True).load(path.read_text())


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load(RULES_DIR / "shoal.rules.yml")["groups"] for rule in group["rules"]]


def test_promtool_checks_the_rules() -> None:
    result = promtool("check", "rules", "shoal.rules.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_promtool_runs_the_rule_unit_tests() -> None:
    result = promtool("test", "rules", "shoal.rules.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_test_fails_when_a_rule_is_wrong(tmp_path: Path) -> None:
    """The unit tests can fail: with the crash-loop threshold raised, they do."""
    shutil.copy(RULES_DIR / "shoal.rules.test.yml", tmp_path)
    text = (RULES_DIR / "shoal.rules.yml").read_text()
    assert text.count(") > 3\n") == 1
    (tmp_path / "shoal.rules.yml").write_text(text.replace(") > 3\n", ") > 300\n"))
    result = promtool("test", "rules", "shoal.rules.test.yml", cwd=tmp_path)
    assert result.returncode != 0
    assert "alertname: ShoalTaskCrashLooping" in result.stdout + result.stderr


def test_every_alert_has_for_severity_and_annotations() -> None:
    rules = alert_rules()
    assert {r["alert"] for r in rules} == ALERTS and len(rules) == len(ALERTS)
    for rule in rules:
        assert rule["for"].endswith("m"), rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
        grouped = [label for label in ("service", "node") if f"by ({label})" in rule["expr"]]
        for label in grouped:  # an alert per service or node names it
            assert f"$labels.{label}" in rule["annotations"]["summary"], rule["alert"]
            assert f"$labels.{label}" in rule["annotations"]["description"], rule["alert"]
    assert {r["alert"] for r in rules if r["labels"]["severity"] == "critical"} == {"ShoalLeaderMissing"}


def test_every_alert_is_tested_firing_and_quiet() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in load(RULES_DIR / "shoal.rules.test.yml")["tests"]:
        for check in case["alert_rule_test"]:
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    assert fired == ALERTS
    assert quiet == ALERTS


def test_the_example_config_is_valid_and_generated() -> None:
    text = (RULES_DIR / "prometheus.yml").read_text()
    assert text == prometheus.example_config(), "regenerate: python -m deploy.lab.prometheus"
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = {job["job_name"]: job for job in load(RULES_DIR / "prometheus.yml")["scrape_configs"]}
    assert list(jobs) == ["shoal-controller", "shoal-agent", "shoal-netplugin"]
    assert all(set(s["labels"]) == {"controller"} for s in jobs["shoal-controller"]["static_configs"])
    assert all(set(s["labels"]) == {"node"} for s in jobs["shoal-agent"]["static_configs"])
    assert all(set(s["labels"]) == {"node"} for s in jobs["shoal-netplugin"]["static_configs"])


def lab_state(tmp_path: Path) -> LabState:
    state = LabState(
        prefix="t",
        state_dir=str(tmp_path),
        run_dir=str(tmp_path / "run"),
        backend="vxlan",
        underlay="10.250.0.0/24",
        network="10.244.0.0/16",
        switch="t-sw",
    )
    state.controllers = [
        ControllerState(id="ctl1", listen="127.0.0.1:1", metrics_url="http://127.0.0.1:9101/metrics"),
        ControllerState(id="ctl2", listen="127.0.0.1:2", metrics_url="http://127.0.0.1:9102/metrics"),
    ]
    for i in (1, 2):
        node = NodeState(
            name=f"node{i}",
            index=i,
            netns=f"t-n{i}",
            port=f"p{i}",
            address=f"10.250.0.{i}",
            dir="",
            run_dir="",
            cgroup_parent="",
            metrics_url=f"http://127.0.0.1:920{i}/metrics",
            netplugin_metrics_url=f"http://127.0.0.1:930{i}/metrics",
        )
        state.nodes.append(node)
    return state


def test_the_lab_config_scrapes_every_daemon_each_second(tmp_path: Path) -> None:
    config = prometheus.write_lab_config(lab_state(tmp_path), tmp_path / "prometheus")
    result = promtool("check", "config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    data = load(config)
    assert data["global"] == {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
    assert data["rule_files"] == ["shoal.rules.yml"]
    assert (config.parent / "shoal.rules.yml").read_text() == (RULES_DIR / "shoal.rules.yml").read_text()
    targets = {
        (job["job_name"], static["targets"][0], tuple(static["labels"].items()))
        for job in data["scrape_configs"]
        for static in job["static_configs"]
    }
    assert targets == {
        ("shoal-controller", "127.0.0.1:9101", (("controller", "ctl1"),)),
        ("shoal-controller", "127.0.0.1:9102", (("controller", "ctl2"),)),
        ("shoal-agent", "127.0.0.1:9201", (("node", "node1"),)),
        ("shoal-agent", "127.0.0.1:9202", (("node", "node2"),)),
        ("shoal-netplugin", "127.0.0.1:9301", (("node", "node1"),)),
        ("shoal-netplugin", "127.0.0.1:9302", (("node", "node2"),)),
    }


@pytest.mark.parametrize(
    ("interval", "timeout"), [("1s", "1s"), ("500ms", "500ms"), ("9s", "9s"), ("10s", "10s"), ("1m", "10s")]
)
def test_a_scrape_never_outlasts_its_interval(interval: str, timeout: str) -> None:
    assert prometheus.scrape_config([], interval)["global"]["scrape_timeout"] == timeout


def test_a_metrics_path_other_than_the_default_is_kept() -> None:
    target = prometheus.target("shoal-agent", "http://10.0.0.1:9402/custom", node="n1")
    config = prometheus.scrape_config([target], "15s")
    assert config["global"]["scrape_timeout"] == "10s"
    assert config["scrape_configs"] == [
        {
            "job_name": "shoal-agent",
            "static_configs": [
                {"targets": ["10.0.0.1:9402"], "labels": {"node": "n1", "__metrics_path__": "/custom"}}
            ],
        }
    ]
