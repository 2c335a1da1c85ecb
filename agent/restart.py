"""Pure restart decisions for containers on a node (moby's restartmanager semantics).

`decide` looks only at its arguments, so every policy and backoff rule is testable
without a clock or a container.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.config import BackoffSettings
from agent.models import RestartPolicy


@dataclass(frozen=True)
class Decision:
    restart: bool
    delay: float
    """Seconds to wait before restarting (0 when not restarting)."""
    reason: str


def decide(
    policy: RestartPolicy,
    exit_code: int,
    manually_stopped: bool,
    restart_count: int,
    run_seconds: float,
    previous_delay: float,
    backoff: BackoffSettings,
) -> Decision:
    """Whether and when to restart a container that just exited.

    `restart_count` is how many restarts already happened; `previous_delay` is the delay
    used before the current run (0 before the first restart).
    """
    if manually_stopped:
        return Decision(False, 0.0, "stopped by the user")
    if policy.name == "no":
        return Decision(False, 0.0, "restart policy is no")
    if policy.name == "on-failure":
        if exit_code == 0:
            return Decision(False, 0.0, "exited successfully")
        if policy.max_retries and restart_count >= policy.max_retries:
            return Decision(False, 0.0, f"maximum restart count {policy.max_retries} reached")
    return Decision(True, next_delay(previous_delay, run_seconds, backoff), f"restart policy {policy.name}")


def next_delay(previous_delay: float, run_seconds: float, backoff: BackoffSettings) -> float:
    """Capped exponential backoff that resets after a run of `reset_after` seconds."""
    if previous_delay <= 0 or run_seconds >= backoff.reset_after:
        return backoff.initial
    return max(backoff.initial, min(previous_delay * backoff.factor, backoff.cap))
