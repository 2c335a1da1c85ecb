"""The controller API end to end: ControlClient -> real gRPC on loopback -> Control -> MemoryStore.

tests/integration/test_control_api_etcd.py runs the core of this against a real etcd.
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from agent.errors import Conflict, InvalidArgument, NotFound, ShoalError, Unavailable
from controller.api import keyspace as ks
from controller.api.control import WRITE_ATTEMPTS, Control
from controller.api.proto import path
from controller.api.proto import shoal_pb2 as pb
from controller.api.server import ApiServer, serve
from controller.api.types import Assignment, NodeInfo, Service, ServiceSpec, Task, TaskStatus
from controller.api.views import ClusterEvent, EventsCompacted
from controller.client import ControlClient, EventSubscription
from controller.store.base import KeyValue, Put
from controller.store.memory import MemoryStore

WAIT = 10.0


@pytest.fixture
def store() -> Iterator[MemoryStore]:
    s = MemoryStore()
    yield s
    s.close()


@pytest.fixture
def server(store: MemoryStore) -> Iterator[ApiServer]:
    srv = serve(store, "127.0.0.1:0")
    yield srv
    srv.stop(0)


@pytest.fixture
def client(server: ApiServer) -> Iterator[ControlClient]:
    with ControlClient(server.address) as c:
        yield c


def web(replicas: int = 2, **changes: object) -> ServiceSpec:
    return ServiceSpec.model_validate({"name": "web", "image": "busybox", "replicas": replicas, **changes})


def node(node_id: str, hostname: str, **changes: object) -> NodeInfo:
    data = {"id": node_id, "hostname": hostname, "address": "10.0.0.1", "nano_cpus": 2_000_000_000}
    return NodeInfo.model_validate({**data, "memory_bytes": 1 << 30, **changes})


def add_node(store: MemoryStore, n: NodeInfo, alive: bool = True) -> int:
    """Register like an agent: the record, and the liveness key on a lease. Returns the lease."""
    store.put(ks.node_key(n.id), ks.encode(n))
    lease = store.grant_lease(5)
    if alive:
        store.put(ks.alive_key(n.id), b"", lease=lease.id)
    return lease.id


def add_task(
    store: MemoryStore, task: Task, status: TaskStatus | None = None, spec: ServiceSpec | None = None
) -> None:
    """Write a task as the leader does (record + assignment) and, optionally, its agent's status."""
    ops = [Put(ks.task_key(task), ks.encode(task))]
    if task.node_id:
        assignment = Assignment(task=task, spec=spec or web())
        ops.append(Put(ks.assignment_key(task.node_id, task.id), ks.encode(assignment)))
    store.txn([], ops)
    if status is not None:
        store.put(ks.status_key(task.node_id, task.id), ks.encode(status))


def task(service_id: str, tid: str, slot: int = 0, node_id: str = "", **changes: object) -> Task:
    data = {"id": tid, "service_id": service_id, "service_name": "web", "spec_version": 1}
    return Task.model_validate(
        {**data, "slot": slot, "node_id": node_id, "created_at": f"t-{tid}", **changes}
    )


def status(tid: str, state: str, **changes: object) -> TaskStatus:
    return TaskStatus.model_validate(
        {"task_id": tid, "state": state, "timestamp": "2030-01-01T00:00:00+00:00", **changes}
    )


# ---- services ------------------------------------------------------------------------------


def test_create_inspect_list(client: ControlClient, store: MemoryStore) -> None:
    spec = web(3, command=["sh", "-c", "sleep 1"], entrypoint=[], labels={"a": "b"}, env=["X=1"])
    created = client.create_service(spec)
    assert re.fullmatch(r"[a-z0-9]{25}", created.id)
    assert created.version == 1 and created.created_at == created.updated_at
    # The spec survives the round trip exactly: None vs [] and every default included.
    assert (
        created.spec == spec
        and created.spec.command == ["sh", "-c", "sleep 1"]
        and created.spec.entrypoint == []
    )
    assert client.inspect_service("web") == created
    assert client.inspect_service(created.id) == created
    kv = store.get(ks.service_key("web"))
    assert kv is not None and ks.decode(type(created), kv.key, kv.value) == created
    [summary] = client.list_services()
    assert (summary.service, summary.running, summary.desired, summary.completed) == (created, 0, 3, 0)


def test_defaults_travel_as_defaults(client: ControlClient) -> None:
    """Optional fields left out take the model's defaults (not 0), and a sent 0 stays 0."""
    created = client.create_service(ServiceSpec(name="web", image="busybox", replicas=0))
    assert created.spec.replicas == 0
    assert created.spec.restart_policy.condition == "any" and created.spec.restart_policy.delay == 5.0
    assert created.spec.command is None and created.spec.mode == "replicated"


def test_duplicate_create_is_a_conflict(client: ControlClient) -> None:
    first = client.create_service(web())
    with pytest.raises(Conflict, match=r"^service web already exists$"):
        client.create_service(web(5))
    assert client.inspect_service("web") == first


def test_update_with_version_guard(client: ControlClient, store: MemoryStore) -> None:
    client.create_service(web(1))
    v2 = client.update_service("web", web(2), version=1)
    assert (v2.version, v2.spec.replicas) == (2, 2)
    with pytest.raises(Conflict, match=r"^update out of sequence: service web is at version 2$"):
        client.update_service("web", web(3), version=1)
    # Without a version: over whatever is stored.
    v3 = client.update_service("web", web(3))
    assert (v3.version, v3.spec.replicas, v3.created_at) == (3, 3, v2.created_at)
    # The same spec again writes nothing.
    _, rev = store.list("")
    assert client.update_service("web", web(3)) == v3
    assert store.list("")[1] == rev


def test_scaling_keeps_the_task_version_and_a_new_image_bumps_it(client: ControlClient) -> None:
    created = client.create_service(web(1))
    scaled = client.update_service("web", web(5))
    assert (scaled.version, scaled.task_version) == (2, created.task_version)  # tasks keep running
    changed = client.update_service("web", web(5, image="busybox:1.36"))
    # Tasks replaced: a fresh task version, above any used before (here the record's new version).
    assert (changed.version, changed.task_version) == (3, 3)


def test_update_refusals(client: ControlClient) -> None:
    client.create_service(web())
    with pytest.raises(InvalidArgument, match=r"^invalid mode 'global': service web is replicated"):
        client.update_service("web", web(mode="global"))
    with pytest.raises(InvalidArgument, match=r"^invalid name 'api': must be the name of the service"):
        client.update_service("web", web().model_copy(update={"name": "api"}))
    with pytest.raises(NotFound, match=r"^service api not found$"):
        client.update_service("api", ServiceSpec(name="api", image="busybox"))
    assert client.inspect_service("web").version == 1


def test_concurrent_updates_never_lose_a_write(server: ApiServer) -> None:
    with ControlClient(server.address) as c:
        c.create_service(web(1))
    n = 8
    assert n <= WRITE_ATTEMPTS
    barrier = threading.Barrier(n)
    results: queue.Queue[Service | ShoalError] = queue.Queue()

    def update(replicas: int, version: int | None) -> None:
        with ControlClient(server.address) as c:
            barrier.wait()
            try:
                results.put(c.update_service("web", web(replicas), version=version))
            except ShoalError as exc:
                results.put(exc)

    def run(version: int | None, offset: int) -> list[Service | ShoalError]:
        threads = [threading.Thread(target=update, args=(offset + i, version)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT)
        return [results.get_nowait() for _ in range(n)]

    # Unguarded: every update lands, each on its own version. (A writer loses a round only to
    # another's success, so at most n - 1 times: within Control's WRITE_ATTEMPTS.)
    unguarded = run(None, 10)
    assert sorted(r.version for r in unguarded if isinstance(r, Service)) == list(range(2, 2 + n))
    # Guarded on the same version: exactly one wins, the others hear "out of sequence".
    guarded = run(1 + n, 100)
    winners = [r for r in guarded if isinstance(r, Service)]
    assert len(winners) == 1
    assert all(isinstance(r, Conflict) and "out of sequence" in str(r) for r in guarded if r not in winners)
    with ControlClient(server.address) as c:
        assert c.inspect_service("web") == winners[0]


def test_remove(client: ControlClient, store: MemoryStore) -> None:
    created = client.create_service(web())
    client.remove_service("web")
    assert store.get(ks.service_key("web")) is None
    with pytest.raises(NotFound, match=r"^service web not found$"):
        client.remove_service("web")
    with pytest.raises(NotFound):
        client.inspect_service(created.id)
    with pytest.raises(InvalidArgument, match=r"^invalid service ''"):
        client.remove_service("")


def test_list_services_counts_observed_tasks(client: ControlClient, store: MemoryStore) -> None:
    svc = client.create_service(web(3))
    add_task(store, task(svc.id, "t1", 1, "n1"), status("t1", "running"))
    add_task(store, task(svc.id, "t2", 2, "n1"), status("t2", "running"))
    add_task(store, task(svc.id, "t3", 3, "n1", desired_state="shutdown"), status("t3", "running"))
    add_task(store, task(svc.id, "t4", 3, "n1", state="assigned"))
    job = client.create_service(
        ServiceSpec(name="batch", image="busybox", mode="replicated-job", total_completions=4)
    )
    done = task(job.id, "j1", 1, "n1", service_name="batch", desired_state="complete")
    add_task(store, done, status("j1", "complete", exit_code=0))
    add_task(store, task(job.id, "j2", 2, "n1", service_name="batch"), status("j2", "running"))
    glob = client.create_service(ServiceSpec(name="agentd", image="busybox", mode="global"))
    add_task(store, task(glob.id, "g1", 0, "n1", service_name="agentd"), status("g1", "running"))
    add_task(store, task(glob.id, "g2", 0, "n2", service_name="agentd"))
    counts = {s.service.spec.name: (s.running, s.desired, s.completed) for s in client.list_services()}
    assert counts == {"web": (2, 3, 0), "batch": (1, 4, 1), "agentd": (1, 2, 0)}


# ---- tasks ---------------------------------------------------------------------------------


def test_list_tasks_merges_the_agents_status(client: ControlClient, store: MemoryStore) -> None:
    svc = client.create_service(web(3))
    add_node(store, node("n1", "h1"))
    add_task(
        store,
        task(svc.id, "t2", 2, "n1", state="assigned"),
        status("t2", "failed", exit_code=3, message="exit 3"),
    )
    add_task(
        store,
        task(svc.id, "t1", 1, "n1", state="assigned"),
        status("t1", "running", restarts=2, container_id="c1"),
    )
    add_task(store, task(svc.id, "t3", 3, state="pending", message="no suitable node"))
    other = client.create_service(ServiceSpec(name="api", image="busybox"))
    add_task(store, task(other.id, "a1", 1, "n1", service_name="api", state="assigned"))

    tasks = client.list_tasks()
    assert [t.id for t in tasks] == ["a1", "t1", "t2", "t3"]  # by service name, then slot
    t1, t2, t3 = tasks[1:]
    assert (t1.state, t1.restarts, t1.container_id, t1.updated_at) == (
        "running",
        2,
        "c1",
        "2030-01-01T00:00:00+00:00",
    )
    assert (t2.state, t2.exit_code, t2.message) == ("failed", 3, "exit 3")
    assert (t3.state, t3.message, t3.exit_code) == ("pending", "no suitable node", None)

    assert [t.id for t in client.list_tasks(service="web")] == ["t1", "t2", "t3"]
    assert [t.id for t in client.list_tasks(service=svc.id)] == ["t1", "t2", "t3"]
    assert [t.id for t in client.list_tasks(node="h1")] == ["a1", "t1", "t2"]
    assert [t.id for t in client.list_tasks(service="api", node="n1")] == ["a1"]
    with pytest.raises(NotFound, match=r"^service nope not found$"):
        client.list_tasks(service="nope")
    with pytest.raises(NotFound, match=r"^node nope not found$"):
        client.list_tasks(node="nope")


# ---- nodes ---------------------------------------------------------------------------------


def test_nodes_ready_from_the_liveness_key(client: ControlClient, store: MemoryStore) -> None:
    lease = add_node(store, node("n1", "h1", ready=False))  # stored "ready" is never trusted
    add_node(store, node("n2", "h2"), alive=False)
    assert [(n.id, n.ready) for n in client.list_nodes()] == [("n1", True), ("n2", False)]
    assert client.inspect_node("h1").ready
    store.advance(10)  # n1's lease runs out without keepalives
    with pytest.raises(NotFound):
        store.keepalive(lease)
    assert not client.inspect_node("n1").ready


def test_inspect_node_by_id_or_hostname(client: ControlClient, store: MemoryStore) -> None:
    add_node(store, node("n1", "h1"))
    add_node(store, node("n2", "twin"))
    add_node(store, node("n3", "twin"))
    assert client.inspect_node("n1") == client.inspect_node("h1")
    assert client.inspect_node("n2").hostname == "twin"
    with pytest.raises(
        InvalidArgument, match=r"^invalid node 'twin': hostname is ambiguous \(nodes n2, n3\)"
    ):
        client.inspect_node("twin")
    with pytest.raises(NotFound, match=r"^node h9 not found$"):
        client.inspect_node("h9")


def test_update_node_availability_and_labels(client: ControlClient, store: MemoryStore) -> None:
    add_node(store, node("n1", "h1", labels={"old": "1", "keep": "k"}))
    updated = client.update_node("h1", availability="drain", label_add={"zone": "a"}, label_rm=["old"])
    assert (updated.availability, updated.labels, updated.ready) == (
        "drain",
        {"keep": "k", "zone": "a"},
        True,
    )
    kv = store.get(ks.node_key("n1"))
    assert kv is not None
    assert ks.decode(NodeInfo, kv.key, kv.value).model_dump(exclude={"ready"}) == updated.model_dump(
        exclude={"ready"}
    )
    assert client.inspect_node("n1") == updated

    _, rev = store.list("")
    assert client.update_node("n1", availability="drain") == updated  # no change, no write
    with pytest.raises(NotFound, match=r"^label old not found on node h1 \(n1\)$"):
        client.update_node("n1", label_rm=["old"])
    with pytest.raises(InvalidArgument, match=r"^invalid availability 'off'"):
        client.update_node("n1", availability="off")
    with pytest.raises(NotFound, match=r"^node n9 not found$"):
        client.update_node("n9", availability="pause")
    assert store.list("")[1] == rev


def test_update_node_keeps_what_the_agent_wrote_meanwhile(store: MemoryStore) -> None:
    """The update is guarded on the record it read: a concurrent agent write is re-read, not lost."""
    add_node(store, node("n1", "h1"))

    class AgentRacesUs(Control):
        raced = False

        def _find_node(self, ref: str) -> tuple[KeyValue, NodeInfo]:
            found = super()._find_node(ref)
            if not self.raced:  # the agent re-registers between our read and our write, once
                self.raced = True
                store.put(ks.node_key("n1"), ks.encode(node("n1", "h1", address="10.9.9.9")))
            return found

    control = AgentRacesUs(store)
    updated = control.update_node("n1", label_add={"zone": "a"})
    assert control.raced
    assert (updated.address, updated.labels) == ("10.9.9.9", {"zone": "a"})
    assert control.inspect_node("n1") == updated


# ---- events --------------------------------------------------------------------------------


class Follower:
    """Reads an event stream on a thread so a stuck stream fails the test instead of hanging it."""

    def __init__(self, stream: EventSubscription) -> None:
        self.stream = stream
        self.events: queue.Queue[ClusterEvent | BaseException | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for event in self.stream:
                self.events.put(event)
            self.events.put(None)
        except BaseException as exc:
            self.events.put(exc)

    def next(self, match: Callable[[ClusterEvent], bool] = lambda e: True) -> ClusterEvent:
        while True:
            item = self.events.get(timeout=WAIT)
            if isinstance(item, BaseException):
                raise item
            assert item is not None, "the stream ended"
            if match(item):
                return item

    def close(self) -> None:
        self.stream.close()
        self.thread.join(WAIT)
        assert not self.thread.is_alive()


def test_events_follow_services_nodes_and_tasks(client: ControlClient, store: MemoryStore) -> None:
    follower = Follower(client.events())
    try:
        svc = client.create_service(web())
        e = follower.next()
        assert (e.type, e.action, e.id, e.name) == ("service", "create", svc.id, "web")
        client.update_service("web", web(5))
        e = follower.next()
        assert (e.type, e.action, e.name) == ("service", "update", "web")

        lease = add_node(store, node("n1", "h1"))
        e = follower.next(lambda e: e.ready is True)
        assert (e.type, e.action, e.id, e.name) == ("node", "update", "n1", "h1")

        add_task(store, task(svc.id, "t1", 1, "n1", state="assigned"), status("t1", "running"))
        e = follower.next(lambda e: e.type == "task" and e.action == "create")
        assert (e.id, e.name, e.node_id, e.state, e.desired_state) == (
            "t1",
            "web.1",
            "n1",
            "assigned",
            "running",
        )
        e = follower.next(lambda e: e.type == "task")
        assert (e.action, e.id, e.name, e.state, e.desired_state) == (
            "update",
            "t1",
            "web.1",
            "running",
            "running",
        )

        store.revoke(lease)  # the node's lease ends: not ready
        e = follower.next(lambda e: e.type == "node")
        assert (e.action, e.id, e.name, e.ready) == ("update", "n1", "h1", False)

        client.remove_service("web")
        e = follower.next(lambda e: e.type == "service")
        assert (e.action, e.id, e.name) == ("remove", svc.id, "web")
    finally:
        follower.close()


def test_events_resume_from_a_revision_and_refuse_a_compacted_one(
    client: ControlClient, store: MemoryStore
) -> None:
    client.create_service(web())
    _, rev = store.list("")
    client.create_service(ServiceSpec(name="api", image="busybox"))
    client.create_service(ServiceSpec(name="db", image="busybox"))
    follower = Follower(client.events(since_revision=rev))  # rev is web's creation
    try:
        assert [follower.next().name for _ in range(3)] == ["web", "api", "db"]
    finally:
        follower.close()

    store.compact(store.list("")[1])
    with pytest.raises(EventsCompacted, match=f"^events since revision {rev} are no longer available.*list"):
        # Raised by events() or by the first next(): etcd refuses at once, the fake on reading.
        next(client.events(since_revision=rev))
    with pytest.raises(InvalidArgument, match=r"^invalid since_revision -1"):
        client.events(since_revision=-1)


def test_closing_a_stream_releases_the_server(server: ApiServer, store: MemoryStore) -> None:
    """Closing the client's stream ends the server's watch too: later events reach no one and
    the server's handler thread is free (a server with one worker serves the next call)."""
    one = serve(store, "127.0.0.1:0", max_workers=1)
    try:
        with ControlClient(one.address, timeout=WAIT) as c:
            follower = Follower(c.events())
            follower.close()
            assert c.list_nodes() == []
            # And the client's close() ends a stream it opened.
            follower = Follower(c.events())
        follower.thread.join(WAIT)
        assert not follower.thread.is_alive()
    finally:
        one.stop(0)


# ---- errors and transport ------------------------------------------------------------------


def test_invalid_argument_reaches_the_client_naming_the_field(
    client: ControlClient, store: MemoryStore
) -> None:
    bad = web(ports=[{"target": 80, "published": 8080}, {"target": 81, "published": 8080}])
    with pytest.raises(InvalidArgument, match=r"^invalid ports\[1\]\.published 8080: already published"):
        client.create_service(bad)
    assert store.list("")[0] == []


def test_malformed_messages_from_any_grpc_client_are_invalid_argument(server: ApiServer) -> None:
    """A client that is not ours can send what pydantic refuses: it gets one line, not a traceback."""
    with grpc.insecure_channel(server.address) as channel:
        create = channel.unary_unary(
            path("CreateService"),
            request_serializer=pb.CreateServiceRequest.SerializeToString,
            response_deserializer=pb.Service.FromString,
        )
        for spec, message in [
            (
                pb.ServiceSpec(name="web", image="busybox", mode="swarm"),
                "invalid mode 'swarm': input should be",
            ),
            (
                pb.ServiceSpec(name="web", image="busybox", replicas=-3),
                "invalid replicas -3: must be between",
            ),
            (pb.ServiceSpec(image="busybox"), "invalid name '': must be 1-63"),
        ]:
            with pytest.raises(grpc.RpcError) as failed:
                create(pb.CreateServiceRequest(spec=spec), timeout=WAIT)
            assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert failed.value.details().startswith(message)


def test_a_bug_is_internal_with_one_line(store: MemoryStore) -> None:
    class Broken(Control):
        def list_nodes(self) -> list[NodeInfo]:
            raise ZeroDivisionError("boom")

    srv = serve(store, "127.0.0.1:0", control=Broken(store))
    try:
        with ControlClient(srv.address) as c, pytest.raises(ShoalError) as failed:
            c.list_nodes()
        assert (
            str(failed.value)
            == "controller internal error: ListNodes: ZeroDivisionError: boom (see the controller's log)"
        )
        assert type(failed.value) is ShoalError
    finally:
        srv.stop(0)


def test_unreachable_controller_is_unavailable_naming_it(store: MemoryStore) -> None:
    srv = serve(store, "127.0.0.1:0")
    srv.stop(0)  # the port is now closed
    with ControlClient(srv.address, timeout=WAIT) as c, pytest.raises(Unavailable) as failed:
        c.list_services()
    assert str(failed.value).startswith(f"controller at {srv.address} is not reachable")
    with ControlClient(srv.address, timeout=WAIT) as c, pytest.raises(Unavailable):
        c.events()


def test_serves_on_a_unix_socket(store: MemoryStore, tmp_path: Path) -> None:
    address = f"unix:{tmp_path}/shoaltest-control.sock"
    srv = serve(store, address)
    try:
        assert srv.address == address
        with ControlClient(address) as c:
            assert c.create_service(web()).spec == web()
    finally:
        srv.stop(0)


def test_listening_on_a_taken_port_is_unavailable(server: ApiServer, store: MemoryStore) -> None:
    with pytest.raises(Unavailable, match=f"^cannot listen on {re.escape(server.address)}"):
        serve(store, server.address)
