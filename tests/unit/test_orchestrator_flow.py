"""The orchestrator end to end on the in-memory store, with agents simulated by hand.

The orchestrator runs its real threads (watch + worker); the test plays the admin (services),
node registration (nodes/, nodes-alive/) and the agents (status/), then waits for the keyspace
to converge.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import pytest

from controller.api import keyspace
from controller.api.types import Task
from controller.orchestrator import Orchestrator
from controller.reconcile import ReconcileSettings
from controller.store.base import Compare, Op, TxnResult
from controller.store.memory import MemoryStore
from tests.support.agent import wait_for
from tests.support.control import (
    GIB,
    SimAgents,
    count,
    observed_tasks,
    per_node,
    put_node,
    put_service,
    stored_tasks,
    take_leadership,
)

SETTINGS = ReconcileSettings(node_down_grace=5.0, max_lost_nodes_per_pass=1, task_history_limit=5)


class ManualClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Cluster:
    store: MemoryStore
    fence: Compare
    agents: SimAgents
    orchestrators: list[Orchestrator]

    def orchestrator(self, store: MemoryStore | None = None) -> Orchestrator:
        o = Orchestrator(store or self.store, self.fence, SETTINGS, clock=self.store.now, retry_interval=0.1)
        o.start()
        self.orchestrators.append(o)
        return o

    def settle(self, condition: Callable[[], bool], what: str) -> None:
        wait_for(self.agents.settled(condition), timeout=10, what=what)

    def tasks(self, service: str = "web") -> list[Task]:
        return stored_tasks(self.store, service)

    def live(self, service: str = "web") -> list[Task]:
        return [t for t in self.tasks(service) if t.desired_state == "running"]


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    store = MemoryStore(ManualClock())
    c = Cluster(store, take_leadership(store), SimAgents(store), [])
    try:
        yield c
    finally:
        for o in c.orchestrators:
            o.stop()
        store.close()


def three_nodes(store: MemoryStore, **kw: object) -> None:
    for n in ("n1", "n2", "n3"):
        put_node(store, n, **kw)  # type: ignore[arg-type]


def placed(c: Cluster, counts: dict[str, int], service: str = "web") -> Callable[[], bool]:
    def check() -> bool:
        live = c.live(service)
        return per_node(live) == counts and all(t.state == "assigned" for t in live)

    return check


def test_replicas_spread_scale_up_down_and_remove(cluster: Cluster) -> None:
    c = cluster
    three_nodes(c.store)
    put_service(c.store, "web", replicas=6)
    c.orchestrator()
    wait_for(placed(c, {"n1": 2, "n2": 2, "n3": 2}), what="6 replicas 2/2/2")
    # Every placed task has its assignment, written in the same transaction.
    assert {(t.node_id, t.id) for t in c.live()} == {
        (keyspace.node_of(kv.key), keyspace.last_component(kv.key))
        for kv in c.store.list(keyspace.ASSIGNMENTS)[0]
    }

    c.settle(lambda: [t.state for t in observed_tasks(c.store, "web")] == ["running"] * 6, "all 6 running")
    put_service(c.store, "web", replicas=9)
    wait_for(lambda: per_node(c.live()) == {"n1": 3, "n2": 3, "n3": 3}, what="9 replicas 3/3/3")
    assert sorted(t.slot for t in c.live()) == list(range(1, 10))

    put_service(c.store, "web", replicas=2)
    # Slots 3..9 are told to stop; once their agents report shutdown their records go. (Every
    # service write bumps its version, so slots 1 and 2 were replaced too and keep history.)
    c.settle(
        lambda: sorted(t.slot for t in c.live()) == [1, 2] and {t.slot for t in c.tasks()} == {1, 2},
        "scale down to 2",
    )
    records = len(c.tasks())
    assert count(c.store, keyspace.ASSIGNMENTS) == records and count(c.store, keyspace.STATUS) == records

    c.store.delete(keyspace.service_key("web"))
    c.settle(
        lambda: (
            not c.tasks() and not count(c.store, keyspace.ASSIGNMENTS) and not count(c.store, keyspace.STATUS)
        ),
        "every task, assignment and status record of the removed service gone",
    )


def test_an_unplaceable_task_waits_with_reasons_until_a_big_node_joins(cluster: Cluster) -> None:
    c = cluster
    three_nodes(c.store, memory=8 * GIB)
    put_service(c.store, "big", replicas=2, resources={"reservations": {"memory_bytes": 12 * GIB}})
    c.orchestrator()
    reason = "no suitable node (insufficient memory on 3 nodes)"
    wait_for(
        lambda: [(t.state, t.message) for t in c.tasks("big")] == [("pending", reason)] * 2,
        what="two pending tasks with the per-node reasons",
    )
    assert count(c.store, keyspace.ASSIGNMENTS) == 0
    # Scaling while they wait keeps them waiting (same task version), with one more beside them.
    put_service(c.store, "big", replicas=3)
    wait_for(lambda: [t.state for t in c.tasks("big")] == ["pending"] * 3, what="three pending tasks")
    put_node(c.store, "huge", memory=48 * GIB)  # no other action: the join alone frees them
    wait_for(placed(c, {"huge": 3}, "big"), what="all three placed on the big node")
    assert all(t.message == "" for t in c.tasks("big"))


def test_pending_reason_is_rewritten_only_when_it_changes(cluster: Cluster) -> None:
    c = cluster
    three_nodes(c.store, memory=1 * GIB)
    put_service(c.store, "big", replicas=1, resources={"reservations": {"memory_bytes": 4 * GIB}})
    o = c.orchestrator()
    wait_for(lambda: [t.state for t in c.tasks("big")] == ["pending"], what="a pending task")
    kv_before = c.store.list(keyspace.tasks_prefix("big"))[0][0]
    commits = o.commits
    put_node(c.store, "n4", memory=1 * GIB)  # more capacity, still too small: the same kind of reason
    wait_for(lambda: "on 4 nodes" in c.tasks("big")[0].message, what="the reason to count 4 nodes")
    assert o.commits == commits + 1
    # A node event that changes nothing for the task (a label on an unrelated node) writes nothing.
    revision = c.store.list(keyspace.tasks_prefix("big"))[0][0].mod_revision
    assert revision > kv_before.mod_revision
    put_node(c.store, "n4", memory=1 * GIB, labels={"x": "y"})
    wait_for(lambda: o.state.revision >= c.store.list("/")[1], what="the orchestrator to see the change")
    wait_for(lambda: len(o.queue) == 0, what="the pass to finish")
    assert c.store.list(keyspace.tasks_prefix("big"))[0][0].mod_revision == revision


def test_a_global_service_follows_nodes_and_constraints(cluster: Cluster) -> None:
    c = cluster
    for n in ("n1", "n2"):
        put_node(c.store, n, labels={"zone": "a"})
    put_node(c.store, "n3", labels={"zone": "b"})
    put_service(c.store, "mon", mode="global", placement={"constraints": ["node.labels.zone==a"]})
    c.orchestrator()
    wait_for(placed(c, {"n1": 1, "n2": 1}, "mon"), what="a task on each zone-a node")
    put_node(c.store, "n4", labels={"zone": "a"})
    wait_for(placed(c, {"n1": 1, "n2": 1, "n4": 1}, "mon"), what="a task on the joining node")
    put_node(c.store, "n2", labels={"zone": "b"})  # n2 stops matching: its task goes
    c.settle(lambda: per_node(c.tasks("mon"), running_only=False) == {"n1": 1, "n4": 1}, "n2's task dropped")


def test_a_global_task_waits_for_room_on_its_node(cluster: Cluster) -> None:
    c = cluster
    put_node(c.store, "n1", memory=8 * GIB)
    put_service(c.store, "hog", replicas=1, resources={"reservations": {"memory_bytes": 6 * GIB}})
    c.orchestrator()
    wait_for(placed(c, {"n1": 1}, "hog"), what="the hog placed")
    put_service(c.store, "agent", mode="global", resources={"reservations": {"memory_bytes": 4 * GIB}})
    wait_for(
        lambda: (
            [(t.state, t.node_id, t.message) for t in c.tasks("agent")]
            == [("pending", "n1", "insufficient memory")]
        ),
        what="the global task pending on its node",
    )
    assert count(c.store, keyspace.assignments_prefix("n1")) == 1  # only the hog's
    c.store.delete(keyspace.service_key("hog"))
    c.settle(lambda: placed(c, {"n1": 1}, "agent")(), "the global task admitted once the hog is gone")


class Interceptor(MemoryStore):
    """The real in-memory store, with a hook that runs just before the orchestrator's next
    transaction touching `key` reaches the store: someone else's write between read and commit."""

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__(clock)
        self.hook: tuple[str, Callable[[], None]] | None = None
        self.results: list[TxnResult] = []

    def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        if self.hook is not None and any(op.key.startswith(self.hook[0]) for op in success):
            action, self.hook = self.hook[1], None
            action()
        result = super().txn(compares, success, failure)
        if any(c.key == keyspace.LEADER for c in compares):  # a leader's (fenced) write
            self.results.append(result)
        return result


def test_a_stale_write_is_replanned_not_applied_blindly() -> None:
    store = Interceptor(ManualClock())
    c = Cluster(store, take_leadership(store), SimAgents(store), [])
    try:
        three_nodes(store)
        put_service(store, "web", replicas=3)
        c.orchestrator()
        wait_for(placed(c, {"n1": 1, "n2": 1, "n3": 1}), what="3 replicas")
        third = next(t for t in c.tasks() if t.slot == 3)
        key = keyspace.task_key(third)

        def someone_else() -> None:  # e.g. an operator's annotation, landing mid-pass
            store.put(key, keyspace.encode(third.model_copy(update={"message": "touched"})))

        store.hook = (key, someone_else)
        store.results.clear()
        put_service(store, "web", replicas=2)
        wait_for(lambda: c.tasks()[-1].desired_state == "shutdown", what="slot 3 told to stop")
        # The first attempt was guarded on the record as read, so it failed; the re-plan kept the
        # other writer's change instead of overwriting it with the stale copy.
        assert [r.succeeded for r in store.results] == [False, True]
        final = next(t for t in c.tasks() if t.slot == 3)
        assert (final.desired_state, final.message) == ("shutdown", "touched")
        assert c.orchestrators[0].conflicts == 1
    finally:
        for o in c.orchestrators:
            o.stop()
        store.close()


def test_a_service_changed_mid_pass_is_replanned_from_the_new_spec() -> None:
    store = Interceptor(ManualClock())
    c = Cluster(store, take_leadership(store), SimAgents(store), [])
    try:
        three_nodes(store)
        put_service(store, "web", replicas=1)
        c.orchestrator()
        wait_for(lambda: len(c.live()) == 1, what="1 replica")

        def operator_scales() -> None:
            put_service(store, "web", replicas=4)

        store.hook = (keyspace.tasks_prefix("web"), operator_scales)
        put_service(store, "web", replicas=6)
        wait_for(lambda: len(c.live()) == 4, what="4 replicas")
        assert [r.succeeded for r in store.results[-2:]] == [False, True]  # refused by the service guard
        # Never 6, not even briefly: nothing of the stale plan (slots 5 and 6) was written, and
        # scaling kept the first task instead of replacing it.
        assert sorted(t.slot for t in c.tasks()) == [1, 2, 3, 4]
        assert {t.spec_version for t in c.tasks()} == {1}
    finally:
        for o in c.orchestrators:
            o.stop()
        store.close()


def test_a_deposed_orchestrator_stops_and_writes_nothing() -> None:
    store = Interceptor(ManualClock())
    lease = store.grant_lease(2)
    c = Cluster(store, take_leadership(store, lease=lease.id), SimAgents(store), [])
    try:
        three_nodes(store)
        put_service(store, "web", replicas=1)
        o = c.orchestrator()
        wait_for(lambda: len(c.live()) == 1, what="1 replica")

        def new_term() -> None:  # our lease runs out and another controller wins, mid-pass
            store.advance(3)
            take_leadership(store, "other")

        store.hook = (keyspace.tasks_prefix("web"), new_term)
        put_service(store, "web", replicas=5)
        wait_for(lambda: o.stopped, what="the orchestrator to stop")
        assert o.deposed
        assert not store.results[-1].succeeded  # the fence refused the write
        assert len(c.tasks()) == 1
    finally:
        for o in c.orchestrators:
            o.stop()
        store.close()


def test_an_orchestrator_for_an_old_term_stops_without_writing(cluster: Cluster) -> None:
    c = cluster
    three_nodes(c.store)
    put_service(c.store, "web", replicas=3)
    stale = Compare(keyspace.LEADER, "create_revision", "==", 1)  # not the current term
    o = Orchestrator(c.store, stale, SETTINGS, clock=c.store.now)
    o.start()
    c.orchestrators.append(o)
    wait_for(lambda: o.stopped, what="the orchestrator to notice")
    assert o.deposed and not c.tasks()


def test_a_restarted_orchestrator_converges_without_duplicating(cluster: Cluster) -> None:
    c = cluster
    three_nodes(c.store)
    put_service(c.store, "web", replicas=6)
    first = c.orchestrator()
    wait_for(lambda: len(c.live()) == 6, what="6 replicas")
    first.stop()
    ids = {t.id for t in c.tasks()}
    put_service(c.store, "web", replicas=7)
    c.orchestrator()  # lists everything afresh
    wait_for(lambda: len(c.live()) == 7, what="7 replicas")
    assert ids < {t.id for t in c.tasks()}


def test_tasks_of_a_lost_node_move_after_the_grace_period(cluster: Cluster) -> None:
    c = cluster
    three_nodes(c.store)
    put_service(c.store, "web", replicas=3)
    o = c.orchestrator()
    c.settle(lambda: per_node(c.live()) == {"n1": 1, "n2": 1, "n3": 1}, "3 replicas")
    c.store.delete(keyspace.alive_key("n3"))
    wait_for(lambda: o.queue.scheduled("web") is not None, what="a pass queued for the end of the grace")
    assert per_node(c.live()) == {"n1": 1, "n2": 1, "n3": 1}  # down, not lost yet: nothing moves
    c.store.advance(SETTINGS.node_down_grace + 0.1)
    wait_for(lambda: per_node(c.live()) in ({"n1": 2, "n2": 1}, {"n1": 1, "n2": 2}), what="n3's task moved")
