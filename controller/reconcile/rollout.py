"""Rolling updates, Swarm's updater made level-triggered: which out-of-date slots to replace this
pass, and the service's UpdateStatus.

Nothing is remembered between passes. The status (state, started_at) is persisted by the leader in
the service record; the rest is read back from the tasks: a slot is part of the rollout once it
holds a task of the current version created since the rollout started next to an older one. Each
such slot occupies one of `parallelism` workers while its new task is not up yet (start-first:
while its old task still runs) and for `delay` seconds after the new task came up or failed.

A failure is a new task of the rollout that failed, was rejected, restarted in place or turned
unhealthy before it came up, or within `monitor` seconds of coming up. When failures / slots of
the rollout (done and still to do, as Swarm's dirty slots) exceed max_failure_ratio, the
failure_action applies: pause (nothing more is replaced until the user changes the service),
continue, or rollback (the leader swaps the spec back and rolls back under rollback_config, whose
failures can only pause or continue). The rollout completes once every slot runs the current
version and the last new task has been up for `monitor` seconds.

A status the leader has to write first (an update that starts) is written in a pass of its own:
replacements begin on the next pass, which reads the persisted started_at back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from controller.api.types import ACTIVE_STATES, Task, UpdateConfig, UpdateState, UpdateStatus

from .context import Context
from .needs import Fresh, Wait, restart_need
from .plan import PlanBuilder
from .slots import Slot
from .task_facts import ENDED_ON_ITS_OWN, created, is_live, iso, parse_time

K = TypeVar("K", int, str)

DONE: tuple[UpdateState, ...] = ("completed", "rollback_completed")
_CLOCK_SLACK = 1e-3
"""ISO timestamps round-trip to the microsecond; compare creation times with this much slack."""


def rolling_back(ctx: Context) -> bool:
    status = ctx.service.update_status
    return status is not None and status.state.startswith("rollback")


def update_config(ctx: Context) -> UpdateConfig:
    """The policy in effect: rollback_config while rolling back, else update_config."""
    spec = ctx.service.spec
    return spec.rollback_config if rolling_back(ctx) else spec.update_config


def start_first(ctx: Context) -> bool:
    return update_config(ctx).order == "start-first"


@dataclass(frozen=True)
class Replacement(Generic[K]):
    key: K
    old: Task
    start_first: bool
    """Start the new task without stopping `old`; the slot stops it once the new one is up."""


def plan_rollout(
    ctx: Context, slots: Mapping[K, Slot], updates: list[tuple[K, Task]], plan: PlanBuilder
) -> list[Replacement[K]]:
    """The out-of-date tasks to replace now, and the status change (if any) into `plan`.

    slots: the slots that stay (wanted slots; global: nodes that take new tasks).
    updates: their out-of-date running tasks that may be replaced now (node fit, not moving).
    """
    status = ctx.service.update_status
    remaining = {k for k, slot in slots.items() if _out_of_date(ctx, slot, plan)}
    if status is None or status.state in DONE:
        if remaining:
            stamp = iso(ctx.now)
            plan.set_status(UpdateStatus(state="updating", message="update in progress", started_at=stamp))
        return []  # the first replacements follow once the status is written
    if status.state not in ACTIVE_STATES:
        return []  # paused: until the user changes the service
    if not status.started_at:
        # Asked for through the API (`service rollback`): its start is stamped by the leader's
        # clock, the one new tasks' creation times are compared with.
        plan.set_status(status.model_copy(update={"started_at": iso(ctx.now)}))
        return []
    config = update_config(ctx)
    since = parse_time(status.started_at) or 0.0
    rollout = _Rollout(ctx, config, since, plan)
    touched = {k: fresh for k, slot in slots.items() if (fresh := rollout.fresh(slot))}
    failures = sorted(
        (t for fresh in touched.values() for t in fresh if rollout.failed(t)),
        key=lambda t: (ctx.stumble_time(t) or 0.0, t.id),
    )
    dirty = len(touched.keys() | remaining)
    if failures and len(failures) / dirty > config.max_failure_ratio and config.failure_action != "continue":
        _act_on_failure(ctx, config, status, failures[0], plan)
        return []
    busy = 0
    in_flight = False
    for key, fresh in touched.items():
        if rollout.in_flight(slots[key], fresh):
            busy += 1
            in_flight = True
            continue
        done = rollout.settled_at(fresh)
        if done is not None and config.delay > 0 and done + config.delay > ctx.now:
            busy += 1
            plan.wake_at(done + config.delay)
    if not remaining and not in_flight:
        _complete_after_monitor(ctx, config, status, touched, plan)
        return []
    chosen: list[Replacement[K]] = []
    free = len(updates) if config.parallelism == 0 else max(0, config.parallelism - busy)
    for key, old in sorted(updates, key=lambda u: u[0]):
        match rollout.may_retry(key, slots[key]):
            case True if len(chosen) < free:
                # Only a running task is worth keeping while its replacement starts.
                chosen.append(Replacement(key, old, config.order == "start-first" and old.state == "running"))
            case None:
                # Its start-first replacement failed for good: as Swarm, stop the old task all the
                # same (the slot ends as stop-first leaves it), or the rollout would never end.
                ctx.retire(old, plan)
    return chosen


def _live(slot: Slot, plan: PlanBuilder) -> list[Task]:
    """Live after this pass's stops (the rest of the pass judges the records as read)."""
    return [t for t in slot.tasks if is_live(t) and not plan.stopping(t)]


def _out_of_date(ctx: Context, slot: Slot, plan: PlanBuilder) -> bool:
    """The slot still runs an older version and has no replacement under way."""
    live = _live(slot, plan)
    return any(t.spec_version != ctx.version for t in live) and all(
        t.spec_version != ctx.version for t in live
    )


class _Rollout:
    def __init__(self, ctx: Context, config: UpdateConfig, since: float, plan: PlanBuilder) -> None:
        self.ctx = ctx
        self.config = config
        self.since = since
        self.plan = plan

    def fresh(self, slot: Slot) -> list[Task]:
        """The slot's tasks of this rollout; none unless the slot had an older task to replace
        (a slot added by scaling up is not an update)."""
        version = self.ctx.version
        if all(t.spec_version == version for t in slot.tasks):
            return []
        return [
            t for t in slot.tasks if t.spec_version == version and created(t) >= self.since - _CLOCK_SLACK
        ]

    def failed(self, task: Task) -> bool:
        stumbled = self.ctx.stumble_time(task)
        if stumbled is None:
            return False
        up = self.ctx.up_time(task)
        return up is None or stumbled - up <= self.config.monitor

    def in_flight(self, slot: Slot, fresh: list[Task]) -> bool:
        """The slot's replacement is not up yet, or (start-first) its old task still runs."""
        version = self.ctx.version
        live = _live(slot, self.plan)
        current = [t for t in live if t.spec_version == version]
        if current and any(t.spec_version != version for t in live):
            return True
        return any(
            self.ctx.up_time(t) is None and self.ctx.stumble_time(t) is None for t in current if t in fresh
        )

    def settled_at(self, fresh: list[Task]) -> float | None:
        """When the slot's replacement last came up or failed (its worker's delay runs from then)."""
        times = [w for t in fresh for w in (self.ctx.up_time(t), self.ctx.stumble_time(t)) if w is not None]
        return max(times, default=None)

    def may_retry(self, key: K, slot: Slot) -> bool | None:
        """A slot whose replacement already failed (start-first keeps the old task running) tries
        again under the restart policy: after its delay (False until then). None: never, as the
        policy does not restart it (condition none, or max_attempts used up)."""
        failed = [
            t
            for t in slot.tasks
            if t.spec_version == self.ctx.version
            and t.state in ENDED_ON_ITS_OWN
            and created(t) >= self.since - _CLOCK_SLACK
        ]
        if not failed:
            return True
        newest = max(failed, key=lambda t: (created(t), t.id))
        node_id = key if isinstance(key, str) else ""
        match restart_need(self.ctx, key if isinstance(key, int) else 0, slot, newest, node_id):
            case Fresh():
                return True
            case Wait(restart):
                self.plan.wake_at(restart.not_before)
                return False
            case _:
                return None


def _act_on_failure(
    ctx: Context, config: UpdateConfig, status: UpdateStatus, task: Task, plan: PlanBuilder
) -> None:
    why = f"due to failure or early termination of task {task.id}"
    if status.state == "rollback_started":
        plan.set_status(
            status.model_copy(update={"state": "rollback_paused", "message": f"rollback paused {why}"})
        )
    elif config.failure_action == "rollback" and ctx.service.previous_spec is not None:
        stamp = iso(ctx.now)
        plan.roll_back(
            UpdateStatus(state="rollback_started", message=f"update rolled back {why}", started_at=stamp)
        )
    else:
        plan.set_status(status.model_copy(update={"state": "paused", "message": f"update paused {why}"}))


def _complete_after_monitor(
    ctx: Context,
    config: UpdateConfig,
    status: UpdateStatus,
    touched: Mapping[K, list[Task]],
    plan: PlanBuilder,
) -> None:
    """Every slot runs the current version: done once the last new task has been up for `monitor`
    seconds without failing (Swarm watches one more monitor period before it completes)."""
    ups = [u for fresh in touched.values() for t in fresh if (u := ctx.up_time(t)) is not None]
    last = max(ups, default=None)
    if last is not None and ctx.now < last + config.monitor:
        plan.wake_at(last + config.monitor)
        return
    plan.set_status(completed(status, ctx.now))


def plan_job_status(ctx: Context, plan: PlanBuilder) -> None:
    """Jobs are not rolled: a new version re-runs the job. An update (or rollback) is done as soon
    as it is noticed, so its status never hangs."""
    status = ctx.service.update_status
    if status is not None and status.state in ACTIVE_STATES:
        plan.set_status(completed(status, ctx.now))


def completed(status: UpdateStatus, now: float) -> UpdateStatus:
    """The finished status; a rollback's keeps why it started."""
    if status.state == "rollback_started":
        message = f"rollback completed ({status.message})" if status.message else "rollback completed"
        return status.model_copy(
            update={"state": "rollback_completed", "message": message, "completed_at": iso(now)}
        )
    return status.model_copy(
        update={"state": "completed", "message": "update completed", "completed_at": iso(now)}
    )
