"""Feasibility filters: each says whether a node can take one more task, and if not, why.

A filter's `check` returns None when the node passes, else a short reason that is the same for
every node failing the same way, so reasons can be counted across nodes ("... on 3 nodes").
Order matters: a plan reports each node's first failure, so the cheaper and more fundamental
checks come first (as in swarmkit's pipeline).
"""

from __future__ import annotations

from typing import Protocol

from controller.api.types import NodeInfo
from controller.scheduler.demand import Demand
from controller.scheduler.snapshot import NodeUsage


class Filter(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def explain(self) -> str:
        """What the filter requires of a node, for docs and debugging."""
        ...

    def check(self, node: NodeInfo, demand: Demand, usage: NodeUsage) -> str | None: ...


class Ready:
    name = "ready"
    explain = "the node's liveness lease is current"

    def check(self, node: NodeInfo, demand: Demand, usage: NodeUsage) -> str | None:
        return None if node.ready else "node not ready"


class Availability:
    name = "availability"
    explain = "the node is active: pause and drain take no new tasks"

    def check(self, node: NodeInfo, demand: Demand, usage: NodeUsage) -> str | None:
        return None if node.availability == "active" else f"node availability is {node.availability}"


class Constraints:
    name = "constraints"
    explain = "the node satisfies every placement constraint"

    def check(self, node: NodeInfo, demand: Demand, usage: NodeUsage) -> str | None:
        for constraint in demand.constraints:
            if not constraint.matches(node):
                return f"constraint {constraint.text} not satisfied"
        return None


class Memory:
    name = "memory"
    explain = "the memory reservation fits in the node's memory minus what its tasks reserve"

    def check(self, node: NodeInfo, demand: Demand, usage: NodeUsage) -> str | None:
        # No reservation, no check: an over-committed node still takes tasks that reserve nothing.
        if demand.memory_bytes and demand.memory_bytes > node.memory_bytes - usage.memory_bytes:
            return "insufficient memory"
        return None


class Cpu:
    name = "cpu"
    explain = "the CPU reservation fits in the node's CPUs minus what its tasks reserve"

    def check(self, node: NodeInfo, demand: Demand, usage: NodeUsage) -> str | None:
        if demand.nano_cpus and demand.nano_cpus > node.nano_cpus - usage.nano_cpus:
            return "insufficient cpu"
        return None


class MaxReplicas:
    name = "max-replicas"
    explain = "the node runs fewer than max_replicas_per_node tasks of the service"

    def check(self, node: NodeInfo, demand: Demand, usage: NodeUsage) -> str | None:
        limit = demand.max_replicas_per_node
        if limit and usage.service_tasks(demand.service) >= limit:
            return f"max replicas per node ({limit}) reached"
        return None


class HostPorts:
    name = "host-ports"
    explain = "no task on the node publishes the same host port and protocol"

    def check(self, node: NodeInfo, demand: Demand, usage: NodeUsage) -> str | None:
        taken = demand.host_ports & usage.host_ports
        if taken:
            port, protocol = min(taken)
            return f"host port {port}/{protocol} in use"
        return None


FILTERS: tuple[Filter, ...] = (
    Ready(),
    Availability(),
    Constraints(),
    Memory(),
    Cpu(),
    MaxReplicas(),
    HostPorts(),
)


def first_failure(node: NodeInfo, demand: Demand, usage: NodeUsage) -> str | None:
    """The reason of the first filter that rejects the node, or None if it is feasible."""
    for check in FILTERS:
        reason = check.check(node, demand, usage)
        if reason is not None:
            return reason
    return None


def all_failures(node: NodeInfo, demand: Demand, usage: NodeUsage) -> list[str]:
    """Every filter's reason, for `explain`: fixing only the first may not be enough."""
    return [reason for check in FILTERS if (reason := check.check(node, demand, usage)) is not None]
