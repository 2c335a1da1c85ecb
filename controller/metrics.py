"""The controller's Prometheus metrics (the catalog of issue #6, controller part).

Two kinds. State gauges (services, nodes, pending tasks, queue depth) are computed at scrape time
from the leader's orchestrator cache by `ClusterCollector`, so no code path has to keep a gauge in
step with the cluster. Event counters and histograms (task transitions, restarts, scheduler
attempts, latencies) are fed by the orchestrator through its Observer hooks. Everything except
`shoal_controller_leader*` and the etcd histogram is exported only while this controller leads,
so sums across controllers count each thing once.

The computations are pure functions over tasks, services and nodes (tested on their own).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.errors import ShoalError
from agent.metrics_server import family_names, new_registry
from controller.api.types import NodeInfo, Service, Task
from controller.orchestrator import Decision, Orchestrator
from controller.orchestrator.decide import build_snapshot
from controller.orchestrator.state import WAITING, ClusterState, TaskRecord
from controller.reconcile.task_facts import is_live, parse_time, succeeded
from controller.scheduler.constraints import parse_constraints
from controller.store.instrumented import etcd_request_histogram

SCHEDULING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
"""A task placed in the pass that created it waits milliseconds; one waiting for capacity, minutes."""
RECONCILE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

# -- pure computations ---------------------------------------------------------------------


def desired_tasks(service: Service, tasks: Sequence[Task], nodes: Sequence[NodeInfo]) -> int:
    """How many tasks the service wants now. replicated: its replicas. global: ready nodes matching
    its constraints that are active, or paused but still running its task (pause keeps what runs).
    job: tasks that should run at once: the completions still wanted (slots without a success at
    the current task version), at most max_concurrent — so desired == running while a job is on
    track, and the replicas-mismatch alert holds for jobs too."""
    spec = service.spec
    if spec.mode == "replicated":
        return spec.replicas
    if spec.mode == "global":
        try:
            constraints = parse_constraints(spec.placement.constraints)
        except ShoalError:
            return 0  # the scheduler refuses the spec: nothing can run
        holding = {t.node_id for t in tasks if t.service_id == service.id and is_live(t)}
        return sum(
            1
            for n in nodes
            if n.ready
            and (n.availability == "active" or (n.availability == "pause" and n.id in holding))
            and all(c.matches(n) for c in constraints)
        )
    done = {
        t.slot
        for t in tasks
        # A rollback gives back an older task version: a success of the newer one does not count.
        if t.service_id == service.id and succeeded(t) and t.spec_version == service.task_version
    }
    remaining = sum(1 for slot in range(1, spec.total_completions + 1) if slot not in done)
    return min(remaining, spec.max_concurrent)


@dataclass(frozen=True)
class NodeGauges:
    ready: bool
    cpu_allocatable_cores: float
    cpu_reserved_cores: float
    memory_allocatable_bytes: int
    memory_reserved_bytes: int


@dataclass(frozen=True)
class ServiceGauges:
    desired: int
    running: int
    healthy: int


@dataclass(frozen=True)
class ClusterGauges:
    services: Mapping[str, ServiceGauges] = field(default_factory=dict)
    nodes: Mapping[str, NodeGauges] = field(default_factory=dict)
    pending_tasks: int = 0


def cluster_gauges(
    services: Sequence[Service], tasks: Sequence[Task], nodes: Sequence[NodeInfo]
) -> ClusterGauges:
    """`tasks` are merged (`observed()`) views; `nodes` have `ready` derived from liveness.
    Reservations are counted as the scheduler counts them (a task holds its node from placement
    until it ends), so the gauges show what the scheduler sees."""
    by_service: dict[str, list[Task]] = {}
    for task in tasks:
        by_service.setdefault(task.service_name, []).append(task)
    service_gauges = {}
    for service in services:
        # Not a deleted service's tasks that share the name and are still being cleaned up.
        own = [t for t in by_service.get(service.spec.name, []) if t.service_id == service.id]
        running = [t for t in own if t.state == "running"]
        service_gauges[service.spec.name] = ServiceGauges(
            desired=desired_tasks(service, own, nodes),
            running=len(running),
            healthy=sum(1 for t in running if t.health in ("", "healthy")),
        )
    snapshot = build_snapshot(nodes, tasks, services)
    node_gauges = {}
    for node in nodes:
        usage = snapshot.usage_of(node.id)
        node_gauges[node.id] = NodeGauges(
            ready=node.ready,
            cpu_allocatable_cores=node.nano_cpus / 1e9,
            cpu_reserved_cores=usage.nano_cpus / 1e9,
            memory_allocatable_bytes=node.memory_bytes,
            memory_reserved_bytes=usage.memory_bytes,
        )
    pending = sum(1 for t in tasks if t.state in WAITING and t.desired_state == "running")
    return ClusterGauges(service_gauges, node_gauges, pending)


@dataclass(frozen=True)
class Transition:
    service: str
    state: str | None
    """The new observed state, or None if it did not change."""
    restarts: int
    """In-place restarts reported since the previous view."""


def transition(before: Task | None, after: Task | None) -> Transition | None:
    """What changed between two merged views of one task. A task that appears has entered its
    first state; one that disappears (deleted) makes no transition."""
    if after is None:
        return None
    if before is None:
        return Transition(after.service_name, after.state, 0)
    state = after.state if after.state != before.state else None
    return Transition(after.service_name, state, max(0, after.restarts - before.restarts))


@dataclass(frozen=True)
class PlacementOutcome:
    scheduled: int
    unschedulable: int
    latencies: tuple[float, ...]
    """Per placed task: seconds from its creation to its assignment."""


def placement_outcome(decision: Decision, records: Mapping[str, TaskRecord], now: float) -> PlacementOutcome:
    created = {t.id: t for t in decision.plan.create}
    latencies = []
    for task_id in decision.placement.assigned:
        record = records.get(task_id)
        task = created.get(task_id) or (record.task if record is not None else None)
        since = parse_time(task.created_at) if task is not None else None
        if since is not None:
            latencies.append(max(0.0, now - since))
    return PlacementOutcome(
        len(decision.placement.assigned), len(decision.placement.pending), tuple(latencies)
    )


# -- collectors ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _StateCopy:
    services: list[Service]
    tasks: list[Task]
    nodes: list[NodeInfo]


def _copy(state: ClusterState) -> _StateCopy:
    """Taken under the orchestrator's lock: references only, the heavy work happens outside it."""
    return _StateCopy(
        [r.service for r in state.services.values()], list(state.views.values()), state.node_infos()
    )


_SERVICE_FAMILIES: tuple[tuple[str, str, Callable[[ServiceGauges], float]], ...] = (
    (
        "shoal_service_desired_tasks",
        "Tasks the service wants (replicas, eligible nodes, completions left).",
        lambda s: s.desired,
    ),
    ("shoal_service_running_tasks", "Tasks of the service observed running.", lambda s: s.running),
    (
        "shoal_service_healthy_tasks",
        "Running tasks of the service that are healthy or have no healthcheck.",
        lambda s: s.healthy,
    ),
)
_NODE_FAMILIES: tuple[tuple[str, str, Callable[[NodeGauges], float]], ...] = (
    ("shoal_node_ready", "1 while the node's liveness lease exists, else 0.", lambda n: float(n.ready)),
    ("shoal_node_cpu_allocatable_cores", "CPUs the node offers to tasks.", lambda n: n.cpu_allocatable_cores),
    (
        "shoal_node_cpu_reserved_cores",
        "CPUs reserved by the tasks placed on the node.",
        lambda n: n.cpu_reserved_cores,
    ),
    (
        "shoal_node_memory_allocatable_bytes",
        "Memory the node offers to tasks.",
        lambda n: n.memory_allocatable_bytes,
    ),
    (
        "shoal_node_memory_reserved_bytes",
        "Memory reserved by the tasks placed on the node.",
        lambda n: n.memory_reserved_bytes,
    ),
)
_PENDING = ("shoal_scheduler_pending_tasks", "Tasks waiting for a node.")
_QUEUE = ("shoal_reconcile_queue_depth", "Services waiting in the orchestrator's work queue.")


class ClusterCollector(Collector):
    """Service and node gauges from the leader's cache at scrape time; nothing when not leading."""

    def __init__(self, orchestrator: Callable[[], Orchestrator | None]) -> None:
        self._orchestrator = orchestrator

    def describe(self) -> Iterator[Metric]:
        for name, doc, _ in _SERVICE_FAMILIES:
            yield GaugeMetricFamily(name, doc, labels=["service"])
        for name, doc, _ in _NODE_FAMILIES:
            yield GaugeMetricFamily(name, doc, labels=["node"])
        for name, doc in (_PENDING, _QUEUE):
            yield GaugeMetricFamily(name, doc)

    def collect(self) -> Iterator[Metric]:
        orchestrator = self._orchestrator()
        if orchestrator is None:
            return
        copy = orchestrator.read(_copy)
        gauges = cluster_gauges(copy.services, copy.tasks, copy.nodes)
        services = sorted(gauges.services.items())
        nodes = sorted(gauges.nodes.items())
        for name, doc, of_service in _SERVICE_FAMILIES:
            yield _family(name, doc, "service", ((n, of_service(s)) for n, s in services))
        for name, doc, of_node in _NODE_FAMILIES:
            yield _family(name, doc, "node", ((n, of_node(g)) for n, g in nodes))
        yield GaugeMetricFamily(*_PENDING, value=gauges.pending_tasks)
        yield GaugeMetricFamily(*_QUEUE, value=len(orchestrator.queue))


def _family(name: str, doc: str, label: str, values: Iterable[tuple[str, float]]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for key, value in values:
        family.add_metric([key], value)
    return family


class WhileLeading(Collector):
    """Exports unregistered metrics only while `leading()`: a follower keeps what it counted as
    leader (counters stay monotonic across terms) but shows it only when it leads again."""

    def __init__(self, metrics: Sequence[MetricWrapperBase], leading: Callable[[], bool]) -> None:
        self._metrics = metrics
        self._leading = leading

    def describe(self) -> Iterator[Metric]:
        for metric in self._metrics:
            yield from metric.describe()

    def collect(self) -> Iterator[Metric]:
        if self._leading():
            for metric in self._metrics:
                yield from metric.collect()


# -- the controller's metrics --------------------------------------------------------------


class ControllerMetrics:
    """Owns the controller's registry; the Controller reports elections, the orchestrator (as its
    Observer) reports what it sees and does."""

    def __init__(self) -> None:
        self.registry = new_registry("controller")
        self._orchestrator: Orchestrator | None = None
        self.leader = Gauge(
            "shoal_controller_leader", "1 while this controller leads, else 0.", registry=self.registry
        )
        self.leader_changes = Counter(
            "shoal_controller_leader_changes_total",
            "Times this controller became the leader.",
            registry=self.registry,
        )
        etcd_request_histogram(self.registry)
        self.transitions = Counter(
            "shoal_task_state_transitions_total",
            "Observed task state changes seen by the leader, by the new state.",
            ["service", "state"],
            registry=None,
        )
        self.restarts = Counter(
            "shoal_task_restarts_total", "In-place restarts reported by agents.", ["service"], registry=None
        )
        self.scheduler_attempts = Counter(
            "shoal_scheduler_attempts_total",
            "Attempts to place a task, by result (scheduled, unschedulable, error).",
            ["result"],
            registry=None,
        )
        self.scheduling_seconds = Histogram(
            "shoal_scheduling_duration_seconds",
            "From a task's creation to its assignment to a node, per placed task.",
            buckets=SCHEDULING_BUCKETS,
            registry=None,
        )
        self.reconcile_seconds = Histogram(
            "shoal_reconcile_duration_seconds",
            "Duration of one service's reconcile pass (plan, place, commit).",
            buckets=RECONCILE_BUCKETS,
            registry=None,
        )
        leader_only: list[MetricWrapperBase] = [
            self.transitions,
            self.restarts,
            self.scheduler_attempts,
            self.scheduling_seconds,
            self.reconcile_seconds,
        ]
        self.registry.register(WhileLeading(leader_only, lambda: self._orchestrator is not None))
        self.registry.register(ClusterCollector(lambda: self._orchestrator))

    # -- the election ----------------------------------------------------------------------

    def became_leader(self) -> None:
        self.leader_changes.inc()
        self.leader.set(1)

    def follow(self, orchestrator: Orchestrator) -> None:
        """The orchestrator this leader runs now (a restarted one replaces the last)."""
        self._orchestrator = orchestrator

    def stepped_down(self) -> None:
        self._orchestrator = None
        self.leader.set(0)

    # -- the orchestrator's Observer ---------------------------------------------------------

    def tasks_changed(self, before: Mapping[str, Task | None], after: Mapping[str, Task | None]) -> None:
        for task_id, view in after.items():
            change = transition(before.get(task_id), view)
            if change is None:
                continue
            if change.state is not None:
                self.transitions.labels(change.service, change.state).inc()
            if change.restarts:
                self.restarts.labels(change.service).inc(change.restarts)

    def service_passed(self, seconds: float) -> None:
        self.reconcile_seconds.observe(seconds)

    def committed(self, decision: Decision, records: Mapping[str, TaskRecord], now: float) -> None:
        outcome = placement_outcome(decision, records, now)
        if outcome.scheduled:
            self.scheduler_attempts.labels("scheduled").inc(outcome.scheduled)
        if outcome.unschedulable:
            self.scheduler_attempts.labels("unschedulable").inc(outcome.unschedulable)
        for seconds in outcome.latencies:
            self.scheduling_seconds.observe(seconds)

    def decide_failed(self) -> None:
        self.scheduler_attempts.labels("error").inc()


def metric_names() -> set[str]:
    return family_names(ControllerMetrics().registry)
