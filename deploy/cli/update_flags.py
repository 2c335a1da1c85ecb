"""Docker's `--update-*` / `--rollback-*` flags of `service create|update`. Pure: flags -> the
update_config / rollback_config fields (the controller validates the result again)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import typer

from agent.errors import invalid
from deploy.values import parse_duration

_ACTIONS = {"update": ("pause", "continue", "rollback"), "rollback": ("pause", "continue")}
_ORDERS = ("stop-first", "start-first")


@dataclass(frozen=True)
class UpdateFlags:
    parallelism: int | None = None
    delay: str | None = None
    failure_action: str | None = None
    monitor: str | None = None
    max_failure_ratio: float | None = None
    order: str | None = None


def apply_update_flags(current: dict[str, Any], flags: UpdateFlags, kind: str) -> dict[str, Any]:
    """`current` (an UpdateConfig's fields) with `flags` applied; kind: "update" or "rollback"
    (which names the flags in errors)."""
    data = dict(current)
    if flags.parallelism is not None:
        if flags.parallelism < 0:
            raise invalid(f"--{kind}-parallelism", flags.parallelism, "must be >= 0 (0: all at once)")
        data["parallelism"] = flags.parallelism
    for name, text in (("delay", flags.delay), ("monitor", flags.monitor)):
        if text is not None:
            data[name] = parse_duration(f"--{kind}-{name}", text)
    if flags.failure_action is not None:
        if flags.failure_action not in _ACTIONS[kind]:
            allowed = " or ".join(_ACTIONS[kind])
            raise invalid(f"--{kind}-failure-action", flags.failure_action, f"expected {allowed}")
        data["failure_action"] = flags.failure_action
    if flags.max_failure_ratio is not None:
        if not 0 <= flags.max_failure_ratio <= 1:
            raise invalid(
                f"--{kind}-max-failure-ratio", flags.max_failure_ratio, "must be a fraction between 0 and 1"
            )
        data["max_failure_ratio"] = flags.max_failure_ratio
    if flags.order is not None:
        if flags.order not in _ORDERS:
            raise invalid(f"--{kind}-order", flags.order, "expected stop-first or start-first")
        data["order"] = flags.order
    return data


def _opt(name: str, metavar: str, help: str) -> Any:
    return typer.Option(name, metavar=metavar, help=help)


UpdateParallelismOpt = Annotated[
    int | None, _opt("--update-parallelism", "N", "Tasks updated at once (0: all; default 1).")
]
UpdateDelayOpt = Annotated[str | None, _opt("--update-delay", "DURATION", "Between updates, e.g. 10s.")]
UpdateFailureActionOpt = Annotated[
    str | None, _opt("--update-failure-action", "ACTION", "pause, continue or rollback (default pause).")
]
UpdateMonitorOpt = Annotated[
    str | None, _opt("--update-monitor", "DURATION", "Watch each new task for failure (default 5s).")
]
UpdateMaxFailureRatioOpt = Annotated[
    float | None, _opt("--update-max-failure-ratio", "RATIO", "Failures tolerated, 0..1 (default 0).")
]
UpdateOrderOpt = Annotated[
    str | None, _opt("--update-order", "ORDER", "stop-first or start-first (default stop-first).")
]
RollbackParallelismOpt = Annotated[
    int | None, _opt("--rollback-parallelism", "N", "Tasks rolled back at once (0: all; default 1).")
]
RollbackDelayOpt = Annotated[
    str | None, _opt("--rollback-delay", "DURATION", "Between rollbacks of tasks, e.g. 10s.")
]
RollbackFailureActionOpt = Annotated[
    str | None, _opt("--rollback-failure-action", "ACTION", "pause or continue (default pause).")
]
RollbackMonitorOpt = Annotated[
    str | None, _opt("--rollback-monitor", "DURATION", "Watch each task for failure (default 5s).")
]
RollbackMaxFailureRatioOpt = Annotated[
    float | None, _opt("--rollback-max-failure-ratio", "RATIO", "Failures tolerated, 0..1 (default 0).")
]
RollbackOrderOpt = Annotated[
    str | None, _opt("--rollback-order", "ORDER", "stop-first or start-first (default stop-first).")
]
