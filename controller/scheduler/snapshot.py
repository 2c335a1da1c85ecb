"""What the scheduler knows of the cluster: the nodes, and what the tasks on each already take."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from controller.api.types import NodeInfo, ServiceSpec, Task, TaskState
from controller.scheduler.demand import Demand, HostPort

# A task holds its node's resources from the moment it has a node until it reaches one of these,
# even once told to shut down: its container (and its host ports) are there until it stops.
_TERMINAL: frozenset[TaskState] = frozenset({"complete", "failed", "shutdown", "rejected", "orphaned"})


def holds_node(task: Task) -> bool:
    return bool(task.node_id) and task.state not in _TERMINAL


@dataclass(frozen=True, slots=True)
class NodeUsage:
    """What the tasks placed on one node take from it."""

    nano_cpus: int = 0
    memory_bytes: int = 0
    tasks: int = 0
    by_service: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    """Task count per service name."""
    host_ports: frozenset[HostPort] = frozenset()

    def service_tasks(self, service: str) -> int:
        return self.by_service.get(service, 0)

    def plus(self, demand: Demand) -> NodeUsage:
        """This usage with one more task of `demand`; costs O(services on the node), not O(tasks)."""
        by_service = dict(self.by_service)
        by_service[demand.service] = by_service.get(demand.service, 0) + 1
        return NodeUsage(
            nano_cpus=self.nano_cpus + demand.nano_cpus,
            memory_bytes=self.memory_bytes + demand.memory_bytes,
            tasks=self.tasks + 1,
            by_service=MappingProxyType(by_service),
            host_ports=self.host_ports | demand.host_ports,
        )


EMPTY = NodeUsage()


@dataclass(frozen=True, slots=True)
class ClusterSnapshot:
    nodes: Mapping[str, NodeInfo]
    """By node id."""
    usage: Mapping[str, NodeUsage]
    """By node id; a node missing here has nothing placed on it."""

    @classmethod
    def build(
        cls, nodes: Iterable[NodeInfo], tasks: Iterable[Task], specs: Mapping[str, ServiceSpec]
    ) -> ClusterSnapshot:
        """`specs` by service id. A task's reservations and ports are its service's current spec's:
        tasks do not carry their own, so a task of an older spec version is counted as the new one.
        Tasks of unknown services count as tasks that reserve nothing; tasks on unknown nodes are
        ignored."""
        by_id = {node.id: node for node in nodes}
        cpus: Counter[str] = Counter()
        memory: Counter[str] = Counter()
        counts: Counter[str] = Counter()
        by_service: dict[str, Counter[str]] = {}
        ports: dict[str, set[HostPort]] = {}
        for task in tasks:
            if task.node_id not in by_id or not holds_node(task):
                continue
            node_id = task.node_id
            counts[node_id] += 1
            by_service.setdefault(node_id, Counter())[task.service_name] += 1
            spec = specs.get(task.service_id)
            if spec is None:
                continue
            cpus[node_id] += spec.resources.reservations.nano_cpus
            memory[node_id] += spec.resources.reservations.memory_bytes
            ports.setdefault(node_id, set()).update((p.published, p.protocol) for p in spec.ports)
        usage = {
            node_id: NodeUsage(
                nano_cpus=cpus[node_id],
                memory_bytes=memory[node_id],
                tasks=counts[node_id],
                by_service=MappingProxyType(dict(by_service[node_id])),
                host_ports=frozenset(ports.get(node_id, ())),
            )
            for node_id in counts
        }
        return cls(MappingProxyType(by_id), MappingProxyType(usage))

    def usage_of(self, node_id: str) -> NodeUsage:
        return self.usage.get(node_id, EMPTY)

    def with_usage(self, changed: Mapping[str, NodeUsage]) -> ClusterSnapshot:
        """A new snapshot where the nodes in `changed` have that usage."""
        if not changed:
            return self
        return ClusterSnapshot(self.nodes, MappingProxyType({**self.usage, **changed}))
