"""Health probes with Docker's HEALTHCHECK semantics: the pure parts (the node runs the probes).

A container with a healthcheck starts each run "starting". Every `interval` one probe runs in it
(`runc exec`); exit 0 is a success, anything else (or running past `timeout`) a failure. A success
makes it "healthy" and clears the failing streak; `retries` failures in a row make it "unhealthy".
While it is still "starting" and within `start_period` of its start, failures do not count (as
moby's daemon/health.go). The last MAX_LOG results are kept, each output cut to MAX_OUTPUT bytes.
"""

from __future__ import annotations

from agent.models import HealthCheck, HealthLogEntry, HealthState

MAX_LOG = 5
MAX_OUTPUT = 4096
TIMED_OUT = -1
"""The exit code recorded for a probe that timed out or could not run (as Docker's)."""
UNHEALTHY = "container unhealthy"
"""How the message of a task stopped for being unhealthy starts."""


def probe_argv(check: HealthCheck | None) -> list[str] | None:
    """The probe's argv in the container; None when there is no probe (no check, or NONE)."""
    if check is None or not check.test or check.test[0] == "NONE":
        return None
    kind, rest = check.test[0], check.test[1:]
    if kind == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(rest)]
    return list(rest)


def initial() -> HealthState:
    return HealthState(status="starting")


def record(state: HealthState, entry: HealthLogEntry, check: HealthCheck, since_start: float) -> HealthState:
    """The state after one probe result; `since_start`: seconds from the run's start to the probe's."""
    log = [*state.log, entry][-MAX_LOG:]
    if entry.exit_code == 0:
        return HealthState(status="healthy", failing_streak=0, log=log)
    if state.status == "starting" and since_start < check.start_period:
        return state.model_copy(update={"log": log})  # failures in the start period do not count
    streak = state.failing_streak + 1
    status = "unhealthy" if streak >= check.retries else state.status
    return HealthState(status=status, failing_streak=streak, log=log)


def clip_output(data: bytes) -> str:
    return data[:MAX_OUTPUT].decode(errors="replace")


def timeout_output(timeout: float) -> str:
    return f"Health check exceeded timeout ({timeout:g}s)"


def unhealthy_message(state: HealthState) -> str:
    """`container unhealthy: <the last probe's output>` on one line, for a task's status."""
    if not state.log:
        return UNHEALTHY
    last = state.log[-1]
    output = " ".join(last.output.split())
    if not output:
        output = f"the probe exited with code {last.exit_code}"
    if len(output) > 200:
        output = output[:199] + "…"
    return f"{UNHEALTHY}: {output}"


def is_unhealthy_message(message: str) -> bool:
    return message == UNHEALTHY or message.startswith(UNHEALTHY + ":")
