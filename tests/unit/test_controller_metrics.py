"""The controller's metrics: the pure computations, the leader-only gating, the --metrics-address
flag, and an in-process controller (real threads, in-memory store, no listener) feeding them."""

from __future__ import annotations

import dataclasses
import re
import socket
from collections.abc import Iterator

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from agent.errors import Unavailable
from agent.metrics_server import serve_metrics
from controller.api.types import NodeInfo, Service, ServiceSpec, Task
from controller.config import ControllerConfig
from controller.daemon import Controller
from controller.metrics import (
    ControllerMetrics,
    PlacementOutcome,
    Transition,
    cluster_gauges,
    desired_tasks,
    metric_names,
    placement_outcome,
    transition,
)
from controller.orchestrator import Decision, Placement
from controller.orchestrator.state import TaskRecord
from controller.reconcile import Plan
from controller.reconcile.task_facts import iso
from controller.store.memory import MemoryStore
from deploy.cli.main import app
from tests.support.agent import wait_for
from tests.support.control import GIB, SimAgents, put_node, put_service

NOW = 1_700_000_000.0
CATALOG = {
    "shoal_build_info",
    "shoal_controller_leader",
    "shoal_controller_leader_changes_total",
    "shoal_service_desired_tasks",
    "shoal_service_running_tasks",
    "shoal_service_healthy_tasks",
    "shoal_task_state_transitions_total",
    "shoal_task_restarts_total",
    "shoal_node_ready",
    "shoal_node_cpu_allocatable_cores",
    "shoal_node_cpu_reserved_cores",
    "shoal_node_memory_allocatable_bytes",
    "shoal_node_memory_reserved_bytes",
    "shoal_scheduler_attempts_total",
    "shoal_scheduler_pending_tasks",
    "shoal_scheduling_duration_seconds",
    "shoal_reconcile_duration_seconds",
    "shoal_reconcile_queue_depth",
    "shoal_etcd_request_duration_seconds",
}


def service(name: str = "web", task_version: int = 1, **spec: object) -> Service:
    return Service(
        id=f"id-{name}",
        spec=ServiceSpec.model_validate({"name": name, "image": "busybox", **spec}),
        task_version=task_version,
        created_at=iso(NOW),
        updated_at=iso(NOW),
    )


def task(task_id: str, svc: Service, **fields: object) -> Task:
    base = {
        "id": task_id,
        "service_id": svc.id,
        "service_name": svc.spec.name,
        "spec_version": svc.task_version,
        "created_at": iso(NOW),
    }
    return Task.model_validate(base | fields)


def node(node_id: str, **fields: object) -> NodeInfo:
    base = {"id": node_id, "hostname": node_id, "address": "127.0.0.1", "nano_cpus": 4 * 10**9}
    return NodeInfo.model_validate(base | {"memory_bytes": 8 * GIB} | fields)


# -- desired tasks per mode -----------------------------------------------------------------


def test_replicated_wants_its_replicas_whatever_runs() -> None:
    web = service(replicas=5)
    assert desired_tasks(web, [task("t1", web, state="running")], [node("n1")]) == 5


def test_global_wants_ready_active_matching_nodes_and_paused_ones_still_running_it() -> None:
    agent = service("agent", mode="global", placement={"constraints": ["node.labels.zone==a"]})
    a = {"labels": {"zone": "a"}}
    nodes = [
        node("active", **a),
        node("down", ready=False, **a),
        node("drained", availability="drain", **a),
        node("paused-empty", availability="pause", **a),
        node("paused-running", availability="pause", **a),
        node("other-zone", labels={"zone": "b"}),
    ]
    tasks = [
        task("t1", agent, node_id="paused-running", state="running"),
        task("t2", agent, node_id="paused-empty", state="shutdown", desired_state="shutdown"),
    ]
    assert desired_tasks(agent, tasks, nodes) == 2  # active + paused-running


def test_global_with_a_placement_the_scheduler_refuses_wants_nothing() -> None:
    broken = service("agent", mode="global", placement={"constraints": ["nonsense"]})
    assert desired_tasks(broken, [], [node("n1")]) == 0


def test_job_wants_the_completions_still_missing_at_the_current_version_up_to_its_concurrency() -> None:
    job = service("job", mode="replicated-job", total_completions=4, max_concurrent=4, task_version=2)
    tasks = [
        task("t1", job, slot=1, state="complete", exit_code=0),
        task("t2", job, slot=2, state="complete", exit_code=0, spec_version=1),  # an older run
        task("t3", job, slot=3, state="failed", exit_code=1),
        task("t4", job, slot=4, state="running"),
    ]
    assert desired_tasks(job, tasks, [node("n1")]) == 3
    # Rolled back from version 3: that run's successes are not this version's.
    rerun = [*tasks, task("t5", job, slot=4, state="complete", exit_code=0, spec_version=3)]
    assert desired_tasks(job, rerun, [node("n1")]) == 3
    narrow = job.model_copy(update={"spec": job.spec.model_copy(update={"max_concurrent": 2})})
    assert desired_tasks(narrow, tasks, [node("n1")]) == 2


# -- the scrape-time gauges -----------------------------------------------------------------


def test_running_healthy_reserved_and_pending_from_merged_views() -> None:
    small = {"reservations": {"nano_cpus": 500_000_000, "memory_bytes": GIB}}
    web = service("web", replicas=4, resources=small)
    idle = service("idle", replicas=0)
    tasks = [
        task("a", web, node_id="n1", state="running"),
        task("b", web, node_id="n1", state="running", health="unhealthy"),
        task("c", web, node_id="n2", state="running", health="healthy"),
        task("d", web, node_id="n2", state="running", health="starting"),
        task("e", web, node_id="n2", state="assigned"),  # placed: holds its reservation already
        task("f", web, node_id="n1", state="failed"),  # ended: holds nothing
        task("g", web, state="pending"),
        task("h", web, state="pending", desired_state="shutdown"),  # waiting, but not wanted
        task("i", web, node_id="n1", state="running", service_id="id-removed"),  # a deleted "web"'s
    ]
    gauges = cluster_gauges([web, idle], tasks, [node("n1"), node("n2", ready=False)])
    assert (gauges.services["web"].desired, gauges.services["web"].running) == (4, 4)
    assert gauges.services["web"].healthy == 2
    assert (gauges.services["idle"].desired, gauges.services["idle"].running) == (0, 0)
    n1, n2 = gauges.nodes["n1"], gauges.nodes["n2"]
    assert (n1.ready, n2.ready) == (True, False)
    assert (n1.cpu_reserved_cores, n1.memory_reserved_bytes) == (1.0, 2 * GIB)
    assert (n2.cpu_reserved_cores, n2.memory_reserved_bytes) == (1.5, 3 * GIB)
    assert (n1.cpu_allocatable_cores, n1.memory_allocatable_bytes) == (4.0, 8 * GIB)
    assert gauges.pending_tasks == 1


# -- transitions and placements -------------------------------------------------------------


def test_transitions_count_new_states_and_restart_increases() -> None:
    web = service()
    assigned = task("t", web, node_id="n1", state="assigned")
    running = assigned.model_copy(update={"state": "running"})
    restarted = running.model_copy(update={"restarts": 3})
    assert transition(None, assigned) == Transition("web", "assigned", 0)
    assert transition(assigned, running) == Transition("web", "running", 0)
    assert transition(running, restarted) == Transition("web", None, 3)
    assert transition(restarted, running) == Transition("web", None, 0)  # a status reset is no restart
    assert transition(running, None) is None


def test_placement_outcome_counts_results_and_creation_to_assignment_latency() -> None:
    web = service()
    waited = task("old", web, created_at=iso(NOW - 30), state="pending")
    fresh = task("new", web, created_at=iso(NOW))
    decision = Decision(
        Plan(create=(fresh,)),
        Placement(assigned={"old": "n1", "new": "n2"}, pending={"x": "no suitable node"}),
        None,
    )
    records = {"old": TaskRecord(waited, "/k/old", 7)}
    assert placement_outcome(decision, records, NOW + 0.5) == PlacementOutcome(2, 1, (30.5, 0.5))


# -- the registry ---------------------------------------------------------------------------


def scrape(metrics: ControllerMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metric_names_are_the_catalog() -> None:
    assert metric_names() == CATALOG


def test_a_controller_that_does_not_lead_exports_no_leader_only_series() -> None:
    metrics = ControllerMetrics()
    web = service()
    metrics.tasks_changed({"t": None}, {"t": task("t", web, state="assigned")})
    metrics.decide_failed()
    found = {name for name, _ in scrape(metrics)}
    assert found <= {
        n for n in CATALOG if n.startswith(("shoal_build", "shoal_controller", "shoal_etcd"))
    } | {
        "shoal_controller_leader_changes_created",
        "shoal_etcd_request_duration_seconds_bucket",
        "shoal_etcd_request_duration_seconds_count",
        "shoal_etcd_request_duration_seconds_sum",
        "shoal_etcd_request_duration_seconds_created",
    }
    assert scrape(metrics)[("shoal_controller_leader", ())] == 0


@pytest.fixture
def controller() -> Iterator[tuple[Controller, ControllerMetrics, MemoryStore]]:
    store = MemoryStore()
    metrics = ControllerMetrics()
    ctl = Controller(ControllerConfig(listen="127.0.0.1:0", controller_id="m1-unit"), store, metrics)
    ctl.start()
    try:
        yield ctl, metrics, store
    finally:
        ctl.stop()
        store.close()


def test_an_in_process_leader_feeds_its_metrics_and_stops_exporting_when_it_steps_down(
    controller: tuple[Controller, ControllerMetrics, MemoryStore],
) -> None:
    ctl, metrics, store = controller
    for n in ("n1", "n2", "n3"):
        put_node(store, n)
    put_service(store, "web", replicas=3, resources={"reservations": {"memory_bytes": GIB}})
    put_service(store, "huge", resources={"reservations": {"memory_bytes": 64 * GIB}})
    agents = SimAgents(store)

    def value(name: str, **labels: str) -> float | None:
        return scrape(metrics).get((name, tuple(sorted(labels.items()))))

    wait_for(
        agents.settled(lambda: value("shoal_service_running_tasks", service="web") == 3),
        what="web running 3/3 in the leader's metrics",
    )
    assert value("shoal_controller_leader") == 1
    assert value("shoal_controller_leader_changes_total") == 1
    assert value("shoal_service_desired_tasks", service="huge") == 1
    assert [value("shoal_node_memory_reserved_bytes", node=n) for n in ("n1", "n2", "n3")] == [GIB] * 3
    assert value("shoal_scheduler_attempts_total", result="scheduled") == 3
    assert (value("shoal_scheduler_attempts_total", result="unschedulable") or 0) >= 1
    assert value("shoal_scheduler_pending_tasks") == 1
    assert value("shoal_task_state_transitions_total", service="web", state="running") == 3
    assert (value("shoal_etcd_request_duration_seconds_count", operation="txn") or 0) >= 2
    assert (value("shoal_etcd_request_duration_seconds_count", operation="list") or 0) >= 1

    ctl.election.resign()
    assert value("shoal_controller_leader") == 0
    names = {name for name, _ in scrape(metrics)}
    assert not {
        n for n in names if n.startswith(("shoal_service", "shoal_node", "shoal_task", "shoal_sched"))
    }


def test_a_taken_port_is_one_clear_error_and_frees_what_started() -> None:
    taken = serve_metrics("127.0.0.1:0", ControllerMetrics().registry)
    address = f"127.0.0.1:{taken.port}"
    store = MemoryStore()
    try:
        config = ControllerConfig(listen="127.0.0.1:0", controller_id="m1-unit", metrics_address=address)
        with pytest.raises(Unavailable, match=rf"^--metrics-address {re.escape(address)}: cannot listen"):
            Controller(config, store).start()
        # The API's port is taken: the metrics listener that started first is closed again.
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free = probe.getsockname()[1]
        config = dataclasses.replace(config, listen=address, metrics_address=f"127.0.0.1:{free}")
        with pytest.raises(Unavailable, match=rf"^cannot listen on {re.escape(address)}"):
            Controller(config, store).start()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", free))
            probe.listen()
    finally:
        taken.close()
        store.close()


# -- the flag ---------------------------------------------------------------------------------


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["controller", *args])
    assert "Traceback" not in result.output
    return result.exit_code, result.stderr


def test_metrics_address_flag_reaches_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[ControllerConfig] = []
    monkeypatch.setattr("controller.daemon.run", seen.append)
    assert invoke("--metrics-address", "127.0.0.1:0")[0] == 0
    assert invoke()[0] == 0
    assert [c.metrics_address for c in seen] == ["127.0.0.1:0", ""]


@pytest.mark.parametrize("bad", ["localhost", "127.0.0.1:99999", ":9090", "127.0.0.1:x"])
def test_a_bad_metrics_address_is_one_line_and_exit_3(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setattr("controller.daemon.run", lambda config: None)
    code, err = invoke("--metrics-address", bad)
    assert code == 3
    assert err.strip().splitlines() == [
        f"Error: invalid --metrics-address {bad!r}: expected HOST:PORT with a port 0-65535"
    ]
