"""Shoal's metric naming rules (beyond what promtool checks) hold for every daemon's registry, and
the checker does catch names that break them."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from prometheus_client import Counter, Gauge, Histogram, Summary
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from agent.metrics import AgentMetrics
from agent.metrics_server import Registry
from controller.metrics import ControllerMetrics
from netplugin.metrics import NetpluginMetrics
from tests.support.metric_naming import Family, families, naming_problems


def registries() -> dict[str, Registry]:
    return {
        "controller": ControllerMetrics().registry,
        "agent": AgentMetrics().registry,
        "netplugin": NetpluginMetrics().registry,
    }


@pytest.mark.parametrize("component", ["controller", "agent", "netplugin"])
def test_every_registered_metric_follows_the_naming_rules(component: str) -> None:
    found = families(registries()[component])
    assert len(found) > 5  # the registry is really there (build_info plus the component's own)
    assert naming_problems(found) == []


BAD_GAUGE = "a gauge must not have _count, _sum, _bucket or _total in its name"


@pytest.mark.parametrize(
    ("family", "problem"),
    [
        (Family("scheduler_attempts_total", "counter", "x"), "does not start with 'shoal_'"),
        (Family("shoal_Attempts_total", "counter", "x"), "not lower_snake_case"),
        (Family("shoal_attempts", "counter", "x"), "a counter's name must end in _total"),
        (
            Family("shoal_sync_duration", "histogram", "x"),
            "a histogram's name must end in _seconds or _bytes",
        ),
        (Family("shoal_rpc_latency", "summary", "x"), "a summary's name must end in _seconds or _bytes"),
        (Family("shoal_last_sync_milliseconds", "gauge", "x"), "not in base units (seconds, bytes)"),
        (Family("shoal_image_size_kb", "gauge", "x"), "not in base units (seconds, bytes)"),
        (Family("shoal_task_count", "gauge", "x"), BAD_GAUGE),
        (Family("shoal_cpu_sum_cores", "gauge", "x"), BAD_GAUGE),
        (Family("shoal_restarts_total", "gauge", "x"), BAD_GAUGE),
        (Family("shoal_leases", "gauge", ""), "no help text"),
        (Family("shoal_leases", "gauge", "   "), "no help text"),
    ],
)
def test_the_checker_flags_bad_names(family: Family, problem: str) -> None:
    problems = naming_problems([family])
    assert problems == [f"{family.name}: {problem}"]


def test_the_checker_passes_good_names() -> None:
    good = [
        Family("shoal_scheduler_attempts_total", "counter", "Placement attempts."),
        Family("shoal_scheduling_duration_seconds", "histogram", "Created to assigned."),
        Family("shoal_image_pull_bytes_total", "counter", "Blob bytes."),
        Family("shoal_node_memory_reserved_bytes", "gauge", "Reserved memory."),
        Family("shoal_account_balance", "gauge", "A word that merely starts like 'count'."),
    ]
    assert naming_problems(good) == []


class _DescribedOnly:
    """Like the leader-only collectors: describe() names a family that collect() may not yield."""

    def describe(self) -> Iterable[Metric]:
        yield GaugeMetricFamily("shoal_jobs_count", "Jobs (badly named).")

    def collect(self) -> Iterable[Metric]:
        return []


def test_families_reads_a_real_registry_and_finds_its_bad_names() -> None:
    registry = Registry()
    Counter("shoal_pulls", "Pulls.", registry=registry)  # exposed as shoal_pulls_total: fine
    Histogram("shoal_sync_latency", "Sync.", registry=registry)
    Summary("shoal_rpc_seconds", "", registry=registry)
    Gauge("containers", "Containers.", registry=registry)
    registry.register(_DescribedOnly())
    found = families(registry)
    assert [(f.name, f.type) for f in found] == [
        ("containers", "gauge"),
        ("shoal_jobs_count", "gauge"),
        ("shoal_pulls_total", "counter"),
        ("shoal_rpc_seconds", "summary"),
        ("shoal_sync_latency", "histogram"),
    ]
    assert naming_problems(found) == [
        "containers: does not start with 'shoal_'",
        "shoal_jobs_count: a gauge must not have _count, _sum, _bucket or _total in its name",
        "shoal_rpc_seconds: no help text",
        "shoal_sync_latency: a histogram's name must end in _seconds or _bytes",
    ]
