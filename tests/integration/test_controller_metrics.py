"""`shoal controller --metrics-address`: real etcd, two real controller processes and a hollow
fleet; the leader's /metrics mirrors the cluster and passes promtool, the follower's stays quiet."""

from __future__ import annotations

import re
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller.api.types import ResourceAmounts, Resources, ServiceSpec
from controller.store.etcd import EtcdStore
from tests.support.agent import wait_for
from tests.support.cluster import ControllerProcess, HollowFleet, leader_id
from tests.support.etcd import EtcdServer

PROMTOOL = "/usr/bin/promtool"
GB = 1024**3
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdServer]:
    with EtcdServer(tmp_path / "etcd") as server:
        yield server


def metrics_url(controller: ControllerProcess) -> str:
    found: list[str] = []

    def logged() -> bool:
        found[:] = re.findall(r"serving metrics on (http://\S+/metrics)", controller.log())
        return bool(found)

    wait_for(logged, timeout=10, what=f"{controller.id} to log its metrics URL")
    return found[0]


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
    return body.decode()


def samples(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def names(found: Samples) -> set[str]:
    return {name for name, _ in found}


def test_leader_metrics_mirror_the_cluster_and_the_follower_exports_none(
    tmp_path: Path, etcd: EtcdServer
) -> None:
    flags = ["--metrics-address", "127.0.0.1:0", "--leader-ttl", "2"]
    store = EtcdStore([etcd.endpoint])
    try:
        with (
            ControllerProcess(tmp_path, etcd.endpoint, flags, name="mctl-a") as a,
            ControllerProcess(tmp_path, etcd.endpoint, flags, name="mctl-b") as b,
            HollowFleet(tmp_path, etcd.endpoint, 3, "mn", ["--ttl", "3"]) as fleet,
        ):
            wait_for(lambda: leader_id(store) in (a.id, b.id), what="a leader")
            leader, follower = (a, b) if leader_id(store) == a.id else (b, a)
            leader_url, follower_url = metrics_url(leader), metrics_url(follower)
            with leader.client() as api:
                api.create_service(ServiceSpec(name="web", image="busybox", replicas=3))
                huge = Resources(reservations=ResourceAmounts(memory_bytes=1024 * GB))
                api.create_service(ServiceSpec(name="huge", image="busybox", resources=huge))

            def converged() -> bool:
                found = samples(scrape(leader_url))
                return (
                    value(found, "shoal_service_running_tasks", service="web") == 3
                    and value(found, "shoal_scheduler_attempts_total", result="unschedulable") is not None
                )

            wait_for(converged, timeout=15, interval=0.1, what="web running 3/3 and huge unschedulable")
            text = scrape(leader_url)
            lint = subprocess.run(
                [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, check=False
            )
            assert lint.returncode == 0, lint.stdout + lint.stderr

            found = samples(text)
            assert value(found, "shoal_controller_leader") == 1
            assert value(found, "shoal_controller_leader_changes_total") == 1
            assert value(found, "shoal_service_desired_tasks", service="web") == 3
            assert value(found, "shoal_service_running_tasks", service="web") == 3
            assert value(found, "shoal_service_healthy_tasks", service="web") == 3
            assert value(found, "shoal_service_desired_tasks", service="huge") == 1
            assert value(found, "shoal_service_running_tasks", service="huge") == 0
            for node in fleet.node_ids:
                assert value(found, "shoal_node_ready", node=node) == 1
                assert value(found, "shoal_node_memory_allocatable_bytes", node=node) == 8 * GB
            assert value(found, "shoal_scheduler_attempts_total", result="scheduled") == 3
            assert (value(found, "shoal_scheduler_attempts_total", result="unschedulable") or 0) >= 1
            assert value(found, "shoal_scheduler_pending_tasks") == 1
            assert value(found, "shoal_scheduling_duration_seconds_count") == 3
            assert value(found, "shoal_task_state_transitions_total", service="web", state="running") == 3
            assert (value(found, "shoal_reconcile_duration_seconds_count") or 0) >= 2
            assert (value(found, "shoal_etcd_request_duration_seconds_count", operation="txn") or 0) >= 1
            assert value(found, "shoal_reconcile_queue_depth") is not None
            build = [k for k in found if k[0] == "shoal_build_info"]
            assert [dict(labels)["component"] for _, labels in build] == ["controller"]

            quiet = samples(scrape(follower_url))
            assert value(quiet, "shoal_controller_leader") == 0
            assert value(quiet, "shoal_controller_leader_changes_total") == 0
            leader_only = {
                n for n in names(found) if n.startswith(("shoal_service_", "shoal_node_", "shoal_task_"))
            }
            leader_only |= {n for n in names(found) if n.startswith(("shoal_scheduler", "shoal_reconcile"))}
            assert leader_only, "the leader exported its per-service series"
            assert not leader_only & names(quiet)
            # The follower still talks to etcd (its lost campaign was a txn): its store is timed too.
            assert (value(quiet, "shoal_etcd_request_duration_seconds_count", operation="txn") or 0) >= 1
    finally:
        store.close()
