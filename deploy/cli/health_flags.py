"""Docker's `--health-*` / `--no-healthcheck` flags, shared by `container run|create` and
`service create|update`. Pure: flags -> the healthcheck's fields (validated again downstream)."""

from __future__ import annotations

from dataclasses import astuple, dataclass
from typing import Annotated, Any

import typer

from agent.errors import invalid
from deploy.values import parse_duration


@dataclass(frozen=True)
class HealthFlags:
    cmd: str | None = None
    interval: str | None = None
    timeout: str | None = None
    retries: int | None = None
    start_period: str | None = None
    no_healthcheck: bool = False

    def given(self) -> list[tuple[str, object]]:
        """The --health-* flags that were given, as (flag, value)."""
        names = ["--health-cmd", "--health-interval", "--health-timeout", "--health-retries"]
        names.append("--health-start-period")
        return [(n, v) for n, v in zip(names, astuple(self)[:5], strict=True) if v is not None]


def apply_health_flags(current: dict[str, Any] | None, flags: HealthFlags) -> dict[str, Any] | None:
    """The healthcheck (its fields as a dict; None: none) after applying `flags` to `current`.

    As Docker: --health-cmd runs through the container's shell (CMD-SHELL); --no-healthcheck
    conflicts with the other flags; the other flags change the check `current` or --health-cmd sets.
    """
    given = flags.given()
    if flags.no_healthcheck:
        if given:
            raise invalid("--no-healthcheck", given[0][0], "conflicts with the --health-* options")
        return None
    if not given:
        return current
    data = dict(current or {})
    if flags.cmd is not None:
        if not flags.cmd.strip():
            raise invalid("--health-cmd", flags.cmd, "must not be empty (use --no-healthcheck to disable)")
        data["test"] = ["CMD-SHELL", flags.cmd]
    elif not data.get("test") or data["test"][0] == "NONE":
        name, value = given[0]
        raise invalid(name, value, "needs --health-cmd (there is no healthcheck to change)")
    for name, field, text in (
        ("--health-interval", "interval", flags.interval),
        ("--health-timeout", "timeout", flags.timeout),
        ("--health-start-period", "start_period", flags.start_period),
    ):
        if text is not None:
            seconds = parse_duration(name, text)
            if seconds <= 0 and field != "start_period":
                raise invalid(name, text, "must be a duration greater than zero")
            data[field] = seconds
    if flags.retries is not None:
        if flags.retries < 1:
            raise invalid("--health-retries", flags.retries, "must be at least 1")
        data["retries"] = flags.retries
    return data


def _opt(name: str, metavar: str, help: str) -> Any:
    return typer.Option(name, metavar=metavar, help=help)


HealthCmdOpt = Annotated[str | None, _opt("--health-cmd", "CMD", "Health probe (run by /bin/sh -c).")]
HealthIntervalOpt = Annotated[
    str | None, _opt("--health-interval", "DURATION", "Between probes, e.g. 30s (default 30s).")
]
HealthTimeoutOpt = Annotated[
    str | None, _opt("--health-timeout", "DURATION", "A probe's time limit (default 30s).")
]
HealthRetriesOpt = Annotated[
    int | None, _opt("--health-retries", "N", "Failures in a row that mean unhealthy (default 3).")
]
HealthStartPeriodOpt = Annotated[
    str | None, _opt("--health-start-period", "DURATION", "Failures do not count yet (default 0s).")
]
NoHealthcheckOpt = Annotated[bool, typer.Option("--no-healthcheck", help="Disable the health probe.")]
