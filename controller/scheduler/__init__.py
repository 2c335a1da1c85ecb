"""The scheduler core: pure functions from a cluster snapshot and a service spec to a plan.

Nothing here does I/O or reads a clock; randomness is a seed passed in, so every plan can be
reproduced in a test. The controller builds a `ClusterSnapshot`, calls `schedule` (or
`place_global`), and writes the plan to the store with a compare on the revision it read.
"""

from controller.scheduler.constraints import (
    Constraint,
    Preference,
    parse_constraint,
    parse_preference,
    validate_placement,
)
from controller.scheduler.demand import Demand
from controller.scheduler.schedule import GlobalPlan, Plan, explain, no_suitable_node, place_global, schedule
from controller.scheduler.snapshot import ClusterSnapshot, NodeUsage

__all__ = [
    "ClusterSnapshot",
    "Constraint",
    "Demand",
    "GlobalPlan",
    "NodeUsage",
    "Plan",
    "Preference",
    "explain",
    "no_suitable_node",
    "parse_constraint",
    "parse_preference",
    "place_global",
    "schedule",
    "validate_placement",
]
