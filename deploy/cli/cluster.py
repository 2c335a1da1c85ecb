"""What the cluster commands share: the controller connection and waiting for convergence.

The controller is `--controller HOST:PORT`, else `$SHOAL_CONTROLLER`, else the client context
(`deploy.context`, written by `shoal lab up`), else 127.0.0.1:4240.
"""

from __future__ import annotations

import os
import sys
import time
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from agent.errors import ShoalError

if TYPE_CHECKING:
    from controller.client import ControlClient

TIMEOUT_EXIT = 124
_TARGET_KEY = "shoal.controller"
_CLIENT_KEY = "shoal.control_client"
_POLL = 0.2


class Format(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


class DataFormat(StrEnum):
    json = "json"
    yaml = "yaml"


OutputOpt = Annotated[Format, typer.Option("-o", "--output", metavar="FORMAT", help="table, json or yaml.")]
DataOutputOpt = Annotated[DataFormat, typer.Option("-o", "--output", metavar="FORMAT", help="json or yaml.")]
QuietOpt = Annotated[bool, typer.Option("-q", "--quiet", help="Only ids.")]
ControllerOpt = Annotated[
    str | None,
    typer.Option(
        "--controller",
        envvar="SHOAL_CONTROLLER",
        metavar="HOST:PORT",
        help="The controller's API (default: the client context, else 127.0.0.1:4240).",
    ),
]
DetachOpt = Annotated[bool, typer.Option("-d", "--detach", help="Return at once; do not wait to converge.")]
TimeoutOpt = Annotated[
    float, typer.Option("--timeout", metavar="SECONDS", help="Give up waiting after this long (exit 124).")
]


def set_controller(ctx: typer.Context, target: str | None) -> None:
    """Group callbacks call this with their --controller option."""
    ctx.meta[_TARGET_KEY] = target


def control(ctx: typer.Context) -> ControlClient:
    """The process's one controller client (created on first use, so bad flags never touch grpc)."""
    cached: ControlClient | None = ctx.meta.get(_CLIENT_KEY)
    if cached is None:
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")
        from controller.client import ControlClient
        from deploy.context import controller_target

        cached = ctx.meta[_CLIENT_KEY] = ControlClient(controller_target(ctx.meta.get(_TARGET_KEY)))
        ctx.call_on_close(cached.close)
    return cached


def wait_converged(client: ControlClient, name: str, timeout: float, quiet: bool = False) -> None:
    """Poll the service's tasks until it converged, showing progress on stderr (when it changes).
    Exits 1 when it failed for good, 124 on timeout; NotFound when it was removed meanwhile."""
    from deploy.cli.converge import progress

    deadline = time.monotonic() + timeout
    shown: tuple[str, ...] = ()
    while True:
        service = client.inspect_service(name)
        tasks = client.list_tasks(service.id)
        ready = sum(1 for n in client.list_nodes() if n.ready) if service.spec.mode == "global" else 1
        state = progress(service, tasks, ready)
        lines = (f"{name}: {state.line()}", *(f"  {e}" for e in state.errors))
        if lines != shown and not quiet:
            sys.stderr.write("\n".join(lines) + "\n")
            sys.stderr.flush()
            shown = lines
        if state.converged:
            if not quiet:
                sys.stderr.write(f"{name}: converged\n")
            return
        if state.failure:
            raise ShoalError(f"service {name} failed to converge: {state.failure}")
        if time.monotonic() >= deadline:
            typer.echo(
                f"Error: service {name} did not converge within {timeout:g}s ({state.line()}); "
                f"see `shoal service ps {name}`",
                err=True,
            )
            raise typer.Exit(TIMEOUT_EXIT)
        time.sleep(_POLL)
