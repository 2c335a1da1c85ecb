import json

import pytest

from agent.errors import IntegrityError, InvalidArgument
from controller.api import keyspace as ks
from controller.api.types import NodeInfo, Service, ServiceSpec, Task, TaskStatus, observed
from controller.store import absent, unchanged
from controller.store.base import Put
from controller.store.memory import MemoryStore


def service(replicas: int = 3) -> Service:
    spec = ServiceSpec(name="web", image="busybox", replicas=replicas)
    return Service(id="svc1", spec=spec, created_at="t0", updated_at="t0")


def test_paths_follow_the_documented_layout() -> None:
    task = Task(id="t1", service_id="svc1", service_name="web", spec_version=1, slot=2)
    glob = Task(id="t2", service_id="svc1", service_name="web", spec_version=1, node_id="n1")
    assert ks.task_key(task) == "/shoal/v1/tasks/web/2/t1"
    assert ks.task_key(glob) == "/shoal/v1/tasks/web/n1/t2"
    assert ks.parse_task_key(ks.task_key(task)) == ks.TaskKey("web", "2", "t1")
    assert ks.status_key("n1", "t1") == "/shoal/v1/status/n1/t1"
    assert ks.alive_key("n1").startswith(ks.ALIVE)


@pytest.mark.parametrize("bad", ["", "a/b"])
def test_components_with_slashes_are_refused(bad: str) -> None:
    with pytest.raises(InvalidArgument, match="may not contain"):
        ks.service_key(bad)


def test_round_trip_and_refusals() -> None:
    s = service()
    assert ks.decode(Service, "k", ks.encode(s)) == s
    node = NodeInfo(id="n1", hostname="h", address="10.0.0.1", nano_cpus=2_000_000_000, memory_bytes=1 << 30)
    with pytest.raises(IntegrityError, match="holds a NodeInfo, expected a Service"):
        ks.decode(Service, "k", ks.encode(node))
    newer = json.dumps({"v": 2, "kind": "Service", "data": {}}).encode()
    with pytest.raises(IntegrityError, match="newer Shoal"):
        ks.decode(Service, "k", newer)
    with pytest.raises(IntegrityError, match="not a Shoal record"):
        ks.decode(Service, "k", b"\xff")


def test_revision_guarded_update_through_the_store() -> None:
    store = MemoryStore()
    key = ks.service_key("web")
    created = store.txn([absent(key)], [Put(key, ks.encode(service(3)))])
    assert created.succeeded
    assert not store.txn([absent(key)], [Put(key, ks.encode(service(5)))]).succeeded
    kv = store.get(key)
    assert kv is not None
    store.put(key, ks.encode(service(4)))  # someone else wrote after our read
    stale = store.txn([unchanged(key, kv.mod_revision)], [Put(key, ks.encode(service(9)))])
    assert not stale.succeeded
    current = store.get(key)
    assert current is not None and ks.decode(Service, key, current.value).spec.replicas == 4


def test_observed_view_takes_the_agents_status_over_the_controllers_state() -> None:
    task = Task(id="t1", service_id="s", service_name="web", spec_version=1, slot=1, node_id="n1")
    assert observed(task.model_copy(update={"state": "assigned"}), None).state == "assigned"
    status = TaskStatus(
        task_id="t1",
        state="failed",
        exit_code=3,
        restarts=2,
        message="exit code 3",
        timestamp="2026-01-01T00:00:00+00:00",
    )
    view = observed(task.model_copy(update={"state": "assigned"}), status)
    assert (view.state, view.exit_code, view.restarts, view.message) == ("failed", 3, 2, "exit code 3")
    assert view.updated_at == status.timestamp and view.node_id == "n1"


def test_assignment_keys_name_the_node_and_task() -> None:
    key = ks.assignment_key("n1", "t1")
    assert key == "/shoal/v1/assignments/n1/t1"
    assert (ks.node_of(key), ks.last_component(key)) == ("n1", "t1")
    with pytest.raises(InvalidArgument):
        ks.assignment_key("n/1", "t1")
