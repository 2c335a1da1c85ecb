"""The leader's orchestrator: a watched cache of the cluster, pure per-service decisions
(reconcile + schedule), and fenced, revision-guarded commits."""

from .commit import Placement, Txn, plan_writes
from .decide import Decision, ServiceInputs, decide
from .orchestrator import Deposed, Orchestrator
from .queue import WorkQueue
from .state import ClusterState

__all__ = [
    "ClusterState",
    "Decision",
    "Deposed",
    "Orchestrator",
    "Placement",
    "ServiceInputs",
    "Txn",
    "WorkQueue",
    "decide",
    "plan_writes",
]
