"""Each filter's reject reason, the snapshot's accounting, and `explain`."""

from __future__ import annotations

from controller.api.types import NodeInfo, ServiceSpec, Task
from controller.scheduler import Demand, explain
from controller.scheduler.filters import FILTERS, first_failure
from controller.scheduler.snapshot import NodeUsage
from tests.unit.test_scheduler_fixtures import CPU, GB, node, placed, snapshot, spec, tasks


def reason(filter_name: str, n: NodeInfo, s: ServiceSpec, usage: NodeUsage | None = None) -> str | None:
    (check,) = [f for f in FILTERS if f.name == filter_name]
    return check.check(n, Demand.of(s), usage or NodeUsage())


def test_every_filter_has_a_name_and_an_explanation() -> None:
    assert len({f.name for f in FILTERS}) == len(FILTERS)
    assert all(f.explain for f in FILTERS)


def test_ready() -> None:
    assert reason("ready", node("a"), spec()) is None
    assert reason("ready", node("a", ready=False), spec()) == "node not ready"


def test_availability_pause_and_drain_reject() -> None:
    assert reason("availability", node("a"), spec()) is None
    assert reason("availability", node("a", availability="pause"), spec()) == "node availability is pause"
    assert reason("availability", node("a", availability="drain"), spec()) == "node availability is drain"


def test_resources() -> None:
    n = node("a", cpus=2, memory_gb=4)
    used = NodeUsage(nano_cpus=1 * CPU, memory_bytes=3 * GB)
    assert reason("memory", n, spec(memory_gb=1), used) is None
    assert reason("memory", n, spec(memory_gb=1.5), used) == "insufficient memory"
    assert reason("cpu", n, spec(cpus=1), used) is None
    assert reason("cpu", n, spec(cpus=1.5), used) == "insufficient cpu"
    # No reservation, no check, even on an over-committed node.
    assert reason("memory", n, spec(), NodeUsage(memory_bytes=5 * GB)) is None


def test_constraints_name_the_first_unsatisfied_one() -> None:
    n = node("a", labels={"disk": "hdd"})
    s = spec(constraints=["node.hostname==host-a", "node.labels.disk==ssd", "node.id==b"])
    assert reason("constraints", n, s) == "constraint node.labels.disk==ssd not satisfied"
    assert reason("constraints", n, spec(constraints=["node.labels.disk==hdd"])) is None


def test_host_ports() -> None:
    used = NodeUsage(host_ports=frozenset({(8080, "tcp")}))
    assert reason("host-ports", node("a"), spec(ports=[8080]), used) == "host port 8080/tcp in use"
    assert reason("host-ports", node("a"), spec(ports=[8081]), used) is None
    udp = NodeUsage(host_ports=frozenset({(8080, "udp")}))
    assert reason("host-ports", node("a"), spec(ports=[8080]), udp) is None


def test_max_replicas_per_node() -> None:
    two = NodeUsage(tasks=2, by_service={"web": 2})
    assert reason("max-replicas", node("a"), spec(max_per_node=2), two) == "max replicas per node (2) reached"
    assert reason("max-replicas", node("a"), spec(max_per_node=3), two) is None
    assert reason("max-replicas", node("a"), spec(max_per_node=0), two) is None
    assert reason("max-replicas", node("a"), spec("db", max_per_node=1), two) is None


def test_snapshot_counts_only_tasks_that_hold_their_node() -> None:
    web = spec("web", cpus=1, memory_gb=1, ports=[80])
    existing: list[Task] = [
        *placed(tasks(2, "web"), "a"),
        *placed(tasks(1, "web", start=3), "a", state="failed"),
        *placed(tasks(1, "web", start=4), "a", state="assigned"),
        # told to stop but not stopped yet: its container still holds the node
        *[t.model_copy(update={"desired_state": "shutdown"}) for t in placed(tasks(1, "web", start=5), "a")],
        *placed(tasks(1, "web", start=6), "gone"),
        *placed(tasks(1, "other"), "a"),  # unknown service: counted, reserves nothing
        *tasks(1, "web", start=7),  # no node yet
    ]
    snap = snapshot([node("a"), node("b")], existing, web)
    usage = snap.usage_of("a")
    assert (usage.tasks, usage.nano_cpus, usage.memory_bytes) == (5, 4 * CPU, 4 * GB)
    assert dict(usage.by_service) == {"web": 4, "other": 1}
    assert usage.host_ports == {(80, "tcp")}
    assert snap.usage_of("b") == NodeUsage()
    assert "gone" not in snap.usage


def test_first_failure_follows_filter_order_and_explain_lists_all() -> None:
    n = node("a", memory_gb=1, availability="drain", labels={"disk": "hdd"})
    s = spec(memory_gb=2, constraints=["node.labels.disk==ssd"])
    assert first_failure(n, Demand.of(s), NodeUsage()) == "node availability is drain"
    assert explain(n, s, snapshot([n])) == [
        "node availability is drain",
        "constraint node.labels.disk==ssd not satisfied",
        "insufficient memory",
    ]
    assert explain(node("b"), spec(), snapshot([node("b")])) == []
