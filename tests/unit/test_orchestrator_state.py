"""ClusterState: load + apply from real store events, and which services each change makes dirty."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from controller.api import keyspace
from controller.api.types import Service, ServiceSpec, Task, TaskStatus
from controller.orchestrator import ClusterState
from controller.store.base import Event
from controller.store.memory import MemoryStore, MemoryWatch
from tests.support.control import put_node, put_service

ROOT = keyspace.PREFIX + "/"


class Feed:
    """A real MemoryStore whose events are folded into a ClusterState by hand, one batch per step."""

    def __init__(self) -> None:
        self.store = MemoryStore()
        self.state = ClusterState()
        self.now = 500.0
        kvs, revision = self.store.list(ROOT)
        self.state.load(kvs, revision, self.now)
        self.watch: MemoryWatch = self.store.watch_prefix(ROOT, revision + 1)

    def events(self) -> list[Event]:
        return self.watch.poll()

    def step(self) -> set[str]:
        return self.state.apply(self.events(), self.now)


@pytest.fixture
def feed() -> Iterator[Feed]:
    f = Feed()
    yield f
    f.watch.close()
    f.store.close()


def task(service: Service, slot: int, node: str = "", state: str = "assigned", tid: str = "") -> Task:
    return Task.model_validate(
        {
            "id": tid or f"{service.spec.name}-{slot or node}",
            "service_id": service.id,
            "service_name": service.spec.name,
            "spec_version": service.version,
            "slot": slot,
            "node_id": node,
            "state": state,
        }
    )


def put_task(store: MemoryStore, t: Task) -> None:
    store.put(keyspace.task_key(t), keyspace.encode(t))


def put_status(store: MemoryStore, t: Task, state: str) -> None:
    status = TaskStatus.model_validate(
        {"task_id": t.id, "state": state, "timestamp": datetime.now(UTC).isoformat()}
    )
    store.put(keyspace.status_key(t.node_id, t.id), keyspace.encode(status))


def test_service_and_task_changes_dirty_their_service(feed: Feed) -> None:
    web = put_service(feed.store, "web", replicas=1)
    assert feed.step() == {"web"}
    put_task(feed.store, task(web, 1, "n1"))
    assert feed.step() == {"web"}
    record = feed.state.tasks["web-1"]
    assert record.key == keyspace.task_key(record.task) and record.mod_revision == feed.store.list(ROOT)[1]
    assert feed.state.services["web"].service == web


def test_a_status_merges_into_the_view_and_dirties_the_tasks_service(feed: Feed) -> None:
    web = put_service(feed.store, "web")
    t = task(web, 1, "n1")
    put_task(feed.store, t)
    feed.step()
    put_status(feed.store, t, "running")
    assert feed.step() == {"web"}
    assert feed.state.tasks[t.id].task.state == "assigned"  # the stored record is untouched
    assert feed.state.views[t.id].state == "running"
    feed.store.delete(keyspace.status_key("n1", t.id))
    feed.step()
    assert feed.state.views[t.id].state == "assigned"


def test_capacity_changes_dirty_waiting_and_global_services_only(feed: Feed) -> None:
    web = put_service(feed.store, "web")
    big = put_service(feed.store, "big")
    mon = put_service(feed.store, "mon", mode="global")
    put_task(feed.store, task(web, 1, "n1"))
    put_task(feed.store, task(big, 1, state="pending"))
    feed.step()
    put_node(feed.store, "n9")  # a node joins: capacity
    assert feed.step() == {big.spec.name, mon.spec.name}
    # A task on n1 ends for good: capacity again, and only then.
    t = feed.state.tasks["web-1"].task
    put_status(feed.store, t, "running")
    assert feed.step() == {"web"}
    put_status(feed.store, t, "failed")
    assert feed.step() == {"web", "big", "mon"}


def test_a_node_event_dirties_the_services_with_tasks_on_it(feed: Feed) -> None:
    web = put_service(feed.store, "web")
    other = put_service(feed.store, "other")
    put_node(feed.store, "n1")
    put_node(feed.store, "n2")
    put_task(feed.store, task(web, 1, "n1"))
    put_task(feed.store, task(other, 1, "n2"))
    feed.step()
    feed.store.delete(keyspace.alive_key("n1"))
    assert feed.step() == {"web"}  # its tasks may have to move; n2's service is not concerned


def test_ready_comes_from_the_alive_key_and_down_since_is_recorded(feed: Feed) -> None:
    put_node(feed.store, "n1")
    put_node(feed.store, "n2", alive=False)
    feed.step()
    assert {n.id: n.ready for n in feed.state.node_infos()} == {"n1": True, "n2": False}
    assert feed.state.down_since == {"n2": 500.0}
    feed.now = 510.0
    feed.store.delete(keyspace.alive_key("n1"))
    feed.step()
    assert feed.state.down_since == {"n1": 510.0, "n2": 500.0}
    feed.store.put(keyspace.alive_key("n2"), b"")
    feed.step()
    assert feed.state.down_since == {"n1": 510.0}


def test_load_keeps_known_down_times_and_times_unknown_ones_as_now(feed: Feed) -> None:
    put_node(feed.store, "n1", alive=False)
    feed.step()
    put_node(feed.store, "n2", alive=False)  # written while we were not watching
    kvs, revision = feed.store.list(ROOT)
    dirty = feed.state.load(kvs, revision, 777.0)
    assert dirty == set()
    assert feed.state.down_since == {"n1": 500.0, "n2": 777.0}
    assert feed.state.revision == revision


def test_load_returns_every_service_including_orphaned_task_groups(feed: Feed) -> None:
    web = put_service(feed.store, "web")
    put_task(feed.store, task(web, 1, "n1"))
    gone = web.model_copy(update={"spec": ServiceSpec(name="gone", image="busybox")})
    put_task(feed.store, task(gone, 1, "n1"))
    kvs, revision = feed.store.list(ROOT)
    assert feed.state.load(kvs, revision, 1.0) == {"web", "gone"}


def test_deletes_forget_records_and_index(feed: Feed) -> None:
    web = put_service(feed.store, "web")
    t = task(web, 1, "n1")
    put_task(feed.store, t)
    feed.store.put(keyspace.assignment_key("n1", t.id), b"raw")
    feed.step()
    assert feed.state.assignments == {keyspace.assignment_key("n1", t.id): b"raw"}
    feed.store.delete(keyspace.task_key(t))
    feed.store.delete(keyspace.assignment_key("n1", t.id))
    assert feed.step() == {"web"}
    assert not feed.state.tasks and not feed.state.views and not feed.state.by_service
    assert not feed.state.assignments


def test_a_corrupt_record_is_skipped_and_the_loop_goes_on(
    feed: Feed, caplog: pytest.LogCaptureFixture
) -> None:
    web = put_service(feed.store, "web")
    t = task(web, 1, "n1")
    put_task(feed.store, t)
    feed.step()
    feed.store.put(keyspace.task_key(t), b"{not json")
    feed.store.put(keyspace.service_key("junk"), keyspace.encode(t))  # a Task where a Service belongs
    assert feed.step() == {"web", "junk"}
    assert t.id not in feed.state.tasks  # never act on the older copy of a record now unreadable
    assert "junk" not in feed.state.services
    assert "not a Shoal record" in caplog.text and "holds a Task, expected a Service" in caplog.text
