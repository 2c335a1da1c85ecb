"""The service reconciler's entry point: desired service + observed tasks and nodes + now -> Plan.

No I/O: time, node down times and task ids are inputs, so the same inputs give the same plan.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from controller.api.types import NodeInfo, Service, Task

from .context import Context
from .global_mode import plan_global
from .job import plan_job
from .node_status import NodeView
from .orphans import plan_orphans
from .plan import Plan, PlanBuilder
from .replicated import plan_replicated
from .rollout import plan_job_status
from .settings import ReconcileSettings


def reconcile(
    service: Service | None,
    tasks: Sequence[Task],
    nodes: Sequence[NodeInfo],
    now: float,
    settings: ReconcileSettings,
    *,
    new_id: Callable[[], str],
    down_since: Mapping[str, float] | None = None,
    ended_at: Mapping[str, float] | None = None,
    up_at: Mapping[str, float] | None = None,
    stumbled_at: Mapping[str, float] | None = None,
) -> Plan:
    """Plan one level-triggered pass for one service (None: the service was removed).

    down_since: when each not-ready node stopped being ready (from its liveness lease).
    ended_at: when terminal tasks ended, if known better than their updated_at.
    up_at / stumbled_at: when tasks were first seen up / failing (rolling updates' monitor and
    delay); without them the tasks' own timestamps stand in.
    """
    view = NodeView.of(nodes, down_since or {}, now, settings)
    plan = PlanBuilder(service, now, new_id)
    if service is None:
        plan_orphans(list(tasks), view, plan)
        return plan.build()
    # Tasks left by an earlier service of the same name are orphans too.
    ours = [t for t in tasks if t.service_id == service.id]
    plan_orphans([t for t in tasks if t.service_id != service.id], view, plan)
    ctx = Context(service, now, settings, view, ended_at or {}, up_at or {}, stumbled_at or {})
    match service.spec.mode:
        case "replicated":
            plan_replicated(ctx, ours, plan)
        case "global":
            plan_global(ctx, ours, plan)
        case "replicated-job":
            plan_job(ctx, ours, plan)
            plan_job_status(ctx, plan)
    return plan.build()
