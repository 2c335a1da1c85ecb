"""The pure service reconciler: compute a Plan from desired and observed state; an executor
applies it. See `reconcile` for the inputs and `Plan` for what to write."""

from .plan import PendingRestart, Plan
from .reconciler import reconcile
from .settings import ReconcileSettings

__all__ = ["PendingRestart", "Plan", "ReconcileSettings", "reconcile"]
