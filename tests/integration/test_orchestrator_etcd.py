"""The orchestrator on a real etcd 3.4: placement at scale, and a leader handing over its work."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.api import keyspace
from controller.api.types import Task
from controller.election import Election
from controller.orchestrator import Orchestrator
from controller.reconcile import ReconcileSettings
from controller.store.base import Compare
from controller.store.etcd import EtcdStore
from tests.support.agent import wait_for
from tests.support.cluster import ControllerProcess, leader_id
from tests.support.control import (
    SimAgents,
    count,
    per_node,
    put_node,
    put_service,
    stored_tasks,
    take_leadership,
)
from tests.support.etcd import EtcdServer

SETTINGS = ReconcileSettings(node_down_grace=5.0, max_lost_nodes_per_pass=1, task_history_limit=5)


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdServer]:
    with EtcdServer(tmp_path / "etcd") as server:
        yield server


@pytest.fixture
def store(etcd: EtcdServer) -> Iterator[EtcdStore]:
    s = EtcdStore([etcd.endpoint])
    try:
        yield s
    finally:
        s.close()


def test_a_thousand_replicas_over_a_hundred_nodes(store: EtcdStore) -> None:
    for i in range(100):
        put_node(store, f"node{i:03d}")
    fence = take_leadership(store)
    orchestrator = Orchestrator(store, fence, SETTINGS)
    orchestrator.start()
    try:
        _, revision = store.list(keyspace.ASSIGNMENTS)
        with store.watch_prefix(keyspace.ASSIGNMENTS, revision + 1) as watch:
            start = time.monotonic()
            put_service(store, "web", replicas=1000)
            seen = 0
            for batch in watch:  # the orchestrator's own commits, as they land
                seen += sum(e.type == "put" for e in batch)
                if seen >= 1000:
                    break
            elapsed = time.monotonic() - start
        print(
            f"\n1,000 tasks over 100 nodes placed and committed in {elapsed:.2f} s: {1000 / elapsed:,.0f}/s"
        )
        tasks = stored_tasks(store, "web")
        assert len(tasks) == 1000 and all(t.state == "assigned" for t in tasks)
        assert set(per_node(tasks).values()) == {10}  # spread evenly
        assert count(store, keyspace.ASSIGNMENTS) == 1000
        assert orchestrator.conflicts == 0 and not orchestrator.stopped
    finally:
        orchestrator.stop()


class Controller:
    """Election + orchestrator, wired as the daemon wires them, on its own etcd connection."""

    def __init__(self, endpoint: str, name: str) -> None:
        self.store = EtcdStore([endpoint])
        self.election = Election(self.store, name, ttl=2.0, retry_interval=0.1)
        self.orchestrator: Orchestrator | None = None
        self.lock = threading.Lock()

    def start(self) -> None:
        self.election.start(self._elected, self._deposed)

    def _elected(self, fence: Compare) -> None:
        with self.lock:
            self.orchestrator = Orchestrator(self.store, fence, SETTINGS)
            self.orchestrator.start()

    def _deposed(self) -> None:
        with self.lock:
            if self.orchestrator is not None:
                self.orchestrator.stop()
                self.orchestrator = None

    def crash(self) -> None:
        self.election.stop()  # stops the orchestrator through on_deposed, leaves the lease
        self.store.close()

    def close(self) -> None:
        self.election.resign()
        self.store.close()


def test_the_next_leader_takes_over_the_orchestration(etcd: EtcdServer, store: EtcdStore) -> None:
    endpoint = etcd.endpoint
    for n in ("n1", "n2", "n3"):
        put_node(store, n)
    agents = SimAgents(store)
    a, b = Controller(endpoint, "ctl-a"), Controller(endpoint, "ctl-b")
    try:
        a.start()
        wait_for(lambda: a.orchestrator is not None, what="ctl-a to orchestrate")
        b.start()
        put_service(store, "web", replicas=3)
        wait_for(
            lambda: per_node(stored_tasks(store, "web")) == {"n1": 1, "n2": 1, "n3": 1}, what="3 replicas"
        )
        a.crash()
        put_service(store, "web", replicas=6)  # written while nobody leads

        def wanted() -> int:
            return len([t for t in stored_tasks(store, "web") if t.desired_state == "running"])

        wait_for(
            agents.settled(lambda: wanted() == 6),
            timeout=15,
            what="ctl-b to lead and scale to 6",
        )
        assert b.orchestrator is not None and b.election.leading
    finally:
        b.close()


def test_controller_daemons_serve_lead_and_fail_over(
    tmp_path: Path, etcd: EtcdServer, store: EtcdStore
) -> None:
    """Real `shoal controller` processes: one leads and places; SIGTERM resigns at once (exit 0);
    kill -9 of the next leader hands over within the lease TTL."""
    tag = uuid.uuid4().hex[:6]
    ctls = [ControllerProcess(tmp_path, etcd.endpoint, name=f"shoaltest-{tag}-{n}") for n in "abc"]
    for n in ("n1", "n2"):
        put_node(store, n)
    try:
        for c in ctls:
            c.start()
        wait_for(lambda: leader_id(store) is not None, what="a leader")
        first = next(c for c in ctls if c.id == leader_id(store))
        put_service(store, "web", replicas=4)
        wait_for(lambda: per_node(stored_tasks(store, "web")) == {"n1": 2, "n2": 2}, what="4 replicas placed")

        first.stop()  # SIGTERM: stop orchestrating, resign, exit 0
        assert first.proc is not None and first.proc.returncode == 0
        assert f"controller {first.id} stepped down" in first.log()
        wait_for(lambda: leader_id(store) not in (None, first.id), what="a new leader after resign")
        second = next(c for c in ctls if c.id == leader_id(store))
        assert f"controller {second.id} is the leader" in second.log()
        put_service(store, "web", replicas=6)
        wait_for(lambda: len(live(store)) == 6, what="the new leader to scale to 6")

        second.kill9()
        wait_for(lambda: leader_id(store) not in (None, second.id), timeout=10, what="takeover after kill -9")
        put_service(store, "web", replicas=8)
        wait_for(lambda: len(live(store)) == 8, what="the third leader to scale to 8")
    finally:
        for c in ctls:
            c.stop()


def live(store: EtcdStore) -> list[Task]:
    return [t for t in stored_tasks(store, "web") if t.desired_state == "running"]
