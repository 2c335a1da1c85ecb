"""The cluster-level restart decision for a task that ended on its own (Swarm's restart policy).

Pure: the answer depends only on the policy and the slot's history, so a later pass gives the
same answer (the attempt window is measured back from the task's end, not from now).
"""

from __future__ import annotations

from collections.abc import Iterable

from controller.api.types import RestartPolicy, Task

from .task_facts import succeeded


def condition_allows(policy: RestartPolicy, task: Task) -> bool:
    if policy.condition == "none":
        return False
    if policy.condition == "on-failure":
        return not succeeded(task)
    return True


def restart_at(
    policy: RestartPolicy, task: Task, ended: float, earlier_ends: Iterable[float], in_place: int = 0
) -> float | None:
    """When to start the replacement for `task` (ended at `ended`), or None to give up.

    `earlier_ends` are the end times of the slot's earlier tasks of the same spec version that
    ended on their own; each of them was restarted once, so they are the attempts made so far.
    `in_place` adds the restarts agents made inside those tasks (their times are not known, so
    they count whatever the window).
    """
    if not condition_allows(policy, task):
        return None
    if policy.max_attempts > 0:
        since = ended - policy.window if policy.window > 0 else float("-inf")
        attempts = in_place + sum(1 for e in earlier_ends if since <= e <= ended)
        if attempts >= policy.max_attempts:
            return None
    return ended + policy.delay
