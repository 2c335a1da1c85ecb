"""A tiny simulated cluster for the reconciler tests: apply plans, play the scheduler and agents."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

from controller.api.types import (
    NodeInfo,
    RestartPolicy,
    Service,
    ServiceMode,
    ServiceSpec,
    Task,
    TaskState,
    rolled_back,
    with_spec,
)
from controller.reconcile import Plan, ReconcileSettings, reconcile
from controller.reconcile.task_facts import is_live, is_terminal, is_up, iso, stumbled


def node(node_id: str, **kw: object) -> NodeInfo:
    return NodeInfo.model_validate(
        {"id": node_id, "hostname": node_id, "address": "10.0.0.1", "nano_cpus": 1, "memory_bytes": 1} | kw
    )


def make_service(
    mode: ServiceMode = "replicated",
    replicas: int = 1,
    version: int = 1,
    policy: RestartPolicy | None = None,
    **spec: object,
) -> Service:
    body = {"name": "web", "image": "busybox", "mode": mode, "replicas": replicas} | spec
    if policy is not None:
        body["restart_policy"] = policy
    return Service(
        id="svc1",
        spec=ServiceSpec.model_validate(body),
        version=version,
        task_version=version,
        created_at="t",
        updated_at="t",
    )


@dataclass
class World:
    service: Service | None
    nodes: dict[str, NodeInfo] = field(default_factory=dict)
    settings: ReconcileSettings = field(default_factory=ReconcileSettings)
    now: float = 1000.0
    tasks: dict[str, Task] = field(default_factory=dict)
    down_since: dict[str, float] = field(default_factory=dict)
    ended: dict[str, float] = field(default_factory=dict)
    up_at: dict[str, float] = field(default_factory=dict)
    stumbled_at: dict[str, float] = field(default_factory=dict)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @classmethod
    def with_nodes(cls, service: Service | None, n: int, **kw: object) -> World:
        world = cls(service, **kw)  # type: ignore[arg-type]
        for i in range(1, n + 1):
            world.nodes[f"n{i}"] = node(f"n{i}")
        return world

    def new_id(self) -> str:
        return f"t{next(self._ids)}"

    def plan(self) -> Plan:
        return reconcile(
            self.service,
            list(self.tasks.values()),
            list(self.nodes.values()),
            self.now,
            self.settings,
            new_id=self.new_id,
            down_since=self.down_since,
            ended_at=self.ended,
            up_at=self.up_at,
            stumbled_at=self.stumbled_at,
        )

    def apply(self, plan: Plan) -> None:
        if plan.update_status is not None:
            assert self.service is not None
            if plan.rollback:
                self.service = rolled_back(self.service, iso(self.now), plan.update_status)
            else:
                self.service = self.service.model_copy(update={"update_status": plan.update_status})
        for task in plan.create:
            assert task.id not in self.tasks
            self.tasks[task.id] = task
        for tid in plan.shutdown:
            self.tasks[tid] = self.tasks[tid].model_copy(update={"desired_state": "shutdown"})
        for tid in plan.remove:
            del self.tasks[tid]

    def step(self) -> Plan:
        plan = self.plan()
        self.apply(plan)
        return plan

    # --- the rest of the cluster, played by hand ---

    def set_state(self, tid: str, state: TaskState, exit_code: int | None = None, **kw: object) -> None:
        """What an agent reports (and the orchestrator notes: when a task came up or stumbled)."""
        task = self.tasks[tid] = self.tasks[tid].model_copy(
            update={"state": state, "exit_code": exit_code} | kw
        )
        if is_terminal(task):
            self.ended[tid] = self.now
        if is_up(task):
            self.up_at.setdefault(tid, self.now)
        if stumbled(task):
            self.stumbled_at.setdefault(tid, self.now)

    def schedule(self) -> None:
        """Place new tasks round-robin on active ready nodes and start them."""
        usable = sorted(n.id for n in self.nodes.values() if n.ready and n.availability == "active")
        for i, task in enumerate(t for t in list(self.tasks.values()) if is_live(t) and t.state == "new"):
            node_id = task.node_id or (usable[i % len(usable)] if usable else "")
            if node_id and self.nodes[node_id].ready:
                self.tasks[task.id] = task.model_copy(update={"node_id": node_id})
                self.set_state(task.id, "running")

    def confirm_stops(self) -> None:
        """Agents on ready nodes stop tasks told to stop."""
        for task in list(self.tasks.values()):
            reachable = not task.node_id or (task.node_id in self.nodes and self.nodes[task.node_id].ready)
            if task.desired_state == "shutdown" and not is_terminal(task) and reachable:
                self.set_state(task.id, "shutdown")

    def node_down(self, node_id: str) -> None:
        self.nodes[node_id] = self.nodes[node_id].model_copy(update={"ready": False})
        self.down_since[node_id] = self.now

    def node_up(self, node_id: str) -> None:
        self.nodes[node_id] = self.nodes[node_id].model_copy(update={"ready": True})
        self.down_since.pop(node_id, None)

    def set_availability(self, node_id: str, availability: str) -> None:
        self.nodes[node_id] = self.nodes[node_id].model_copy(update={"availability": availability})

    def update_spec(self, bump: bool = True, **spec: object) -> None:
        """A user's change, as the API makes it (`bump=False` asserts it changes no task)."""
        assert self.service is not None
        new_spec = ServiceSpec.model_validate(self.service.spec.model_dump() | spec)
        before = self.service.task_version
        self.service = with_spec(self.service, new_spec, iso(self.now))
        assert bump or self.service.task_version == before

    def wanted(self) -> list[Task]:
        """Tasks whose desired state is running (terminal ones awaiting a restart included)."""
        return [t for t in self.tasks.values() if t.desired_state == "running"]

    def live(self) -> list[Task]:
        return [t for t in self.tasks.values() if is_live(t)]

    def slots(self) -> list[int]:
        return sorted(t.slot for t in self.live())


def test_world_runs_a_service_to_steady_state() -> None:
    world = World.with_nodes(make_service(replicas=2), 2)
    world.step()
    world.schedule()
    assert world.step().is_noop
    assert sorted(t.node_id for t in world.live()) == ["n1", "n2"]
