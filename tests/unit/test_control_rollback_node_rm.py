"""`service rollback` and `node rm` through the API (ControlClient -> gRPC -> Control -> MemoryStore),
and what the orchestrator does with the tasks of a removed node."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.errors import Conflict, NotFound
from controller.api import keyspace as ks
from controller.api.control import Control
from controller.api.server import ApiServer, serve
from controller.client import ControlClient
from controller.orchestrator import Orchestrator
from controller.reconcile import ReconcileSettings
from controller.store.memory import MemoryStore
from tests.support.agent import wait_for
from tests.support.control import SimAgents, per_node, put_node, stored_tasks, take_leadership
from tests.unit.test_control_api import add_node, node, web


@pytest.fixture
def store() -> Iterator[MemoryStore]:
    s = MemoryStore()
    yield s
    s.close()


@pytest.fixture
def client(store: MemoryStore) -> Iterator[ControlClient]:
    server: ApiServer = serve(store, "127.0.0.1:0")
    try:
        with ControlClient(server.address) as c:
            yield c
    finally:
        server.stop(0)


# ---- rollback --------------------------------------------------------------------------------


def test_update_keeps_the_previous_spec_and_rollback_swaps_them(client: ControlClient) -> None:
    created = client.create_service(web(2))
    assert created.previous_spec is None
    updated = client.update_service("web", web(2, image="busybox:new"))
    assert updated.previous_spec == web(2) and updated.task_version == 2

    rolled = client.rollback_service("web")
    assert (rolled.spec, rolled.previous_spec) == (web(2), web(2, image="busybox:new"))
    # A new version; tasks still running the previous spec get their task version back (only
    # the others are replaced), under the rollback_config: the leader completes the status.
    assert (rolled.version, rolled.task_version, rolled.previous_task_version) == (3, 1, 2)
    assert rolled.update_status is not None and rolled.update_status.state == "rollback_started"
    assert rolled.update_status.message == "manually requested rollback"
    assert client.inspect_service("web") == rolled

    again = client.rollback_service(rolled.id)  # by id too; a second rollback undoes the first
    assert (again.spec, again.previous_spec) == (web(2, image="busybox:new"), web(2))
    assert (again.version, again.task_version) == (4, 2)


def test_rolling_back_a_scale_keeps_the_tasks(client: ControlClient) -> None:
    client.create_service(web(2))
    client.update_service("web", web(5))
    rolled = client.rollback_service("web")
    assert rolled.spec.replicas == 2 and rolled.task_version == 1


def test_an_unchanged_update_keeps_the_previous_spec(client: ControlClient) -> None:
    client.create_service(web(2))
    client.update_service("web", web(3))
    assert client.update_service("web", web(3)).previous_spec == web(2)


def test_rollback_refusals(client: ControlClient, store: MemoryStore) -> None:
    client.create_service(web(2))
    before = store.get(ks.service_key("web"))
    with pytest.raises(Conflict, match=r"^service web has no previous spec to roll back to$"):
        client.rollback_service("web")
    assert store.get(ks.service_key("web")) == before  # nothing written
    with pytest.raises(NotFound, match="service nope not found"):
        client.rollback_service("nope")


# ---- node rm ---------------------------------------------------------------------------------

READY_REFUSAL = r"^node host-1 is ready: drain it and stop its agent first, or use --force$"


def test_a_ready_node_is_refused_unless_forced(client: ControlClient, store: MemoryStore) -> None:
    add_node(store, node("n1", "host-1"))
    with pytest.raises(Conflict, match=READY_REFUSAL):
        client.remove_node("host-1")
    assert store.get(ks.node_key("n1")) is not None and store.get(ks.alive_key("n1")) is not None

    client.remove_node("host-1", force=True)
    assert store.get(ks.node_key("n1")) is None and store.get(ks.alive_key("n1")) is None
    assert client.list_nodes() == []


def test_a_down_node_is_removed_by_id_or_hostname(client: ControlClient, store: MemoryStore) -> None:
    add_node(store, node("n1", "host-1"), alive=False)
    add_node(store, node("n2", "host-2"), alive=False)
    add_node(store, node("n3", "host-3"))
    client.remove_node("n1")
    client.remove_node("host-2")
    assert [n.id for n in client.list_nodes()] == ["n3"]
    with pytest.raises(NotFound, match="node n1 not found"):
        client.remove_node("n1")


def test_the_orchestrator_replaces_the_tasks_of_a_removed_node() -> None:
    store = MemoryStore()
    agents = SimAgents(store)
    fence = take_leadership(store)
    settings = ReconcileSettings(node_down_grace=3600.0)  # so only removal, not the grace, moves tasks
    orchestrator = Orchestrator(store, fence, settings, clock=store.now, retry_interval=0.1)
    try:
        for n in ("n1", "n2", "n3"):
            put_node(store, n)
        control = Control(store)
        control.create_service(web(3))
        orchestrator.start()

        def live() -> dict[str, int]:
            return per_node([t for t in stored_tasks(store, "web") if t.desired_state == "running"])

        wait_for(agents.settled(lambda: live() == {"n1": 1, "n2": 1, "n3": 1}), what="3 replicas, 1 a node")
        store.delete(ks.alive_key("n3"))  # its agent stopped: down, and within the (long) grace
        control.remove_node("n3")
        wait_for(
            agents.settled(lambda: live() in ({"n1": 2, "n2": 1}, {"n1": 1, "n2": 2})), what="n3's task moved"
        )
    finally:
        orchestrator.stop()
        store.close()
