"""Health checks of tasks, for real: etcd, a `shoal agent --etcd` with runc and busybox. Assignments
are written by hand, as the leader would. An unhealthy task container is stopped as a failure
(kubelet's liveness probes): restarted in place under its restart policy, or failed without one."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from controller.api import keyspace
from controller.api.types import Assignment, HealthCheck, RestartPolicy, ServiceSpec, Task, TaskStatus
from controller.store.etcd import EtcdStore
from tests.support.agent import AgentProcess, wait_for
from tests.support.etcd import EtcdServer
from tests.support.registry import Registry

WAIT = 30.0


@pytest.fixture
def cluster(tmp_path: Path, registry: Registry) -> Iterator[tuple[EtcdStore, AgentProcess]]:
    (tmp_path / "agent").mkdir()
    with EtcdServer(tmp_path / "etcd") as etcd:
        store = EtcdStore([etcd.endpoint])
        try:
            with AgentProcess(tmp_path / "agent", registry.host, etcd=etcd.endpoint) as agent:
                yield store, agent
        finally:
            store.close()


def assign(store: EtcdStore, node: str, slot: int, check: HealthCheck, policy: RestartPolicy) -> Assignment:
    name = f"svc{uuid.uuid4().hex[:6]}"
    task = Task(
        id=uuid.uuid4().hex[:16],
        service_id=f"id-{name}",
        service_name=name,
        spec_version=1,
        slot=slot,
        node_id=node,
        state="assigned",
    )
    spec = ServiceSpec(
        name=name,
        image="busybox",
        command=["sleep", "300"],
        healthcheck=check,
        restart_policy=policy,
        stop_grace_period=0.2,  # busybox sleep as pid 1 ignores SIGTERM: SIGKILL follows soon
    )
    a = Assignment(task=task, spec=spec)
    store.put(keyspace.assignment_key(node, task.id), keyspace.encode(a))
    return a


def wait_status(store: EtcdStore, a: Assignment, what: str, ok: Callable[[TaskStatus], bool]) -> TaskStatus:
    def get() -> TaskStatus | None:
        kv = store.get(keyspace.status_key(a.task.node_id, a.task.id))
        return keyspace.decode(TaskStatus, kv.key, kv.value) if kv else None

    seen: list[TaskStatus] = []

    def matched() -> bool:
        s = get()
        if s is None or not ok(s):
            return False
        seen.append(s)  # the status that matched: a later get() may already hold a newer one
        return True

    wait_for(matched, timeout=WAIT, what=f"task {a.task.id}: {what}")
    return seen[-1]


def test_task_health_is_reported_and_unhealthy_containers_are_restarted_or_failed(
    cluster: tuple[EtcdStore, AgentProcess],
) -> None:
    store, agent = cluster
    node = agent.node_id
    passing = assign(store, node, 1, HealthCheck(test=["CMD", "true"], interval=0.2), RestartPolicy())
    # Always failing, but only counted after a 1 s start period: each run is "starting" for a while.
    flapping = assign(
        store,
        node,
        2,
        HealthCheck(test=["CMD-SHELL", "echo not ready; exit 1"], interval=0.2, retries=2, start_period=1.0),
        RestartPolicy(condition="any"),
    )
    doomed = assign(
        store,
        node,
        3,
        HealthCheck(test=["CMD", "false"], interval=0.2, retries=2),
        RestartPolicy(condition="none"),
    )

    healthy = wait_status(store, passing, "healthy", lambda s: s.health == "healthy")
    assert (healthy.state, healthy.restarts) == ("running", 0)

    # Unhealthy: reported, then the container is stopped and restarted in place, health starting over.
    first = wait_status(store, flapping, "unhealthy", lambda s: s.health == "unhealthy")
    assert (first.state, first.restarts) == ("running", 0)
    again = wait_status(store, flapping, "restarted", lambda s: s.restarts >= 1 and s.health == "starting")
    assert again.state == "running" and again.container_id == first.container_id
    info = agent.client().container_inspect(again.container_id)
    assert info.state.restart_count >= 1 and info.state.status == "running"

    # Without in-place restarts it ends failed, saying why; the controller would replace it.
    failed = wait_status(store, doomed, "failed", lambda s: s.state == "failed")
    assert failed.message == "container unhealthy: the probe exited with code 1"
    assert (failed.health, failed.restarts) == ("", 0)
    state = agent.client().container_inspect(failed.container_id).state
    assert state.status == "exited" and not state.manually_stopped
    assert state.error == failed.message

    # The healthy one was left alone throughout.
    assert wait_status(store, passing, "still healthy", lambda s: s.health == "healthy").restarts == 0
