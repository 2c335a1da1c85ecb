"""What one task of a service asks of a node, compiled once from its spec.

Filters and scorers run per node, thousands of times per plan; parsing constraints or summing
ports there would make each check cost far more than the comparison it does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from controller.api.types import ServiceSpec
from controller.scheduler.constraints import Constraint, Preference, parse_constraints, parse_preferences

HostPort = tuple[int, str]
"""(published port, protocol)."""


@dataclass(frozen=True, slots=True)
class Demand:
    service: str
    """The service's name: unique in the cluster, and all a spec knows of its service."""
    nano_cpus: int
    memory_bytes: int
    host_ports: frozenset[HostPort]
    constraints: tuple[Constraint, ...]
    preferences: tuple[Preference, ...]
    max_replicas_per_node: int
    """0 means no limit."""
    strategy: Literal["spread", "binpack"]

    @classmethod
    def of(cls, spec: ServiceSpec) -> Demand:
        """Raises `InvalidArgument` if the placement does not parse."""
        reservations = spec.resources.reservations
        return cls(
            service=spec.name,
            nano_cpus=reservations.nano_cpus,
            memory_bytes=reservations.memory_bytes,
            # Every Shoal port is published in host mode, so each one is taken on the node.
            host_ports=frozenset((port.published, port.protocol) for port in spec.ports),
            constraints=parse_constraints(spec.placement.constraints),
            preferences=parse_preferences(spec.placement.preferences),
            max_replicas_per_node=spec.placement.max_replicas_per_node,
            strategy=spec.scheduling,
        )
