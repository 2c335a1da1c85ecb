"""`shoal agent`: the node daemon, in the foreground (run it under systemd or a supervisor)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated

import typer

from agent.errors import invalid
from deploy.cli.common import absolute


def agent(
    state_dir: Annotated[
        str, typer.Option("--state-dir", metavar="DIR", help="Images, containers, volumes and logs.")
    ] = "/var/lib/shoal",
    run_dir: Annotated[
        str, typer.Option("--run-dir", metavar="DIR", help="The API socket and runc state.")
    ] = "/run/shoal",
    runc: Annotated[str, typer.Option("--runc", metavar="PATH", help="runc binary.")] = "runc",
    default_registry: Annotated[
        str | None,
        typer.Option(
            "--default-registry", metavar="HOST[:PORT]", help="Registry for short names like busybox."
        ),
    ] = None,
    bind_allow: Annotated[
        list[str] | None,
        typer.Option(
            "--bind-allow",
            metavar="PATH",
            help="Host path prefix bind mounts may use (repeatable; none by default).",
        ),
    ] = None,
    allow_privileged: Annotated[
        bool, typer.Option("--allow-privileged", help="Permit --privileged containers.")
    ] = False,
    allow_host_network: Annotated[
        bool, typer.Option("--allow-host-network", help="Permit --network host.")
    ] = False,
    allow_cap_add: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-cap-add",
            metavar="CAP",
            help="Capability --cap-add may add beyond docker's defaults (repeatable).",
        ),
    ] = None,
    log_max_size: Annotated[
        str, typer.Option("--log-max-size", metavar="BYTES", help="Rotate a container's log at this size.")
    ] = "10m",
    log_max_files: Annotated[
        int, typer.Option("--log-max-files", metavar="N", help="Log files kept per container.")
    ] = 5,
    cgroup_parent: Annotated[
        str, typer.Option("--cgroup-parent", metavar="NAME", help="cgroup under which containers are placed.")
    ] = "shoal",
    restart_delay: Annotated[
        float, typer.Option("--restart-delay", metavar="SECONDS", help="Delay before the first restart.")
    ] = 0.1,
    restart_factor: Annotated[
        float, typer.Option("--restart-factor", metavar="X", help="Delay multiplier per quick restart.")
    ] = 2.0,
    restart_max_delay: Annotated[
        float, typer.Option("--restart-max-delay", metavar="SECONDS", help="Largest restart delay.")
    ] = 60.0,
    restart_reset_after: Annotated[
        float,
        typer.Option("--restart-reset-after", metavar="SECONDS", help="A run this long resets the delay."),
    ] = 10.0,
) -> None:
    """Run the node agent in the foreground until SIGTERM or Ctrl-C.

    Its API socket is RUN_DIR/agent.sock (--host does not apply here).
    """
    from agent.config import AgentConfig, BackoffSettings
    from agent.models import parse_size, validate_name

    if log_max_files < 1:
        raise invalid("--log-max-files", log_max_files, "must be at least 1")
    if not restart_delay > 0:
        raise invalid("--restart-delay", restart_delay, "must be greater than zero")
    if restart_factor < 1:
        raise invalid("--restart-factor", restart_factor, "must be at least 1")
    if restart_max_delay < restart_delay:
        raise invalid("--restart-max-delay", restart_max_delay, "must be at least --restart-delay")
    if restart_reset_after < 0:
        raise invalid("--restart-reset-after", restart_reset_after, "must not be negative")
    validate_name("--cgroup-parent", cgroup_parent)
    config = AgentConfig(
        state_dir=Path(absolute(state_dir)),
        run_dir=Path(absolute(run_dir)),
        runc=runc,
        cgroup_parent=cgroup_parent,
        default_registry=default_registry,
        bind_allow=tuple(Path(absolute(p)) for p in bind_allow or []),
        allow_privileged=allow_privileged,
        allow_host_namespaces=allow_host_network,
        allowed_cap_add=frozenset(c.upper().removeprefix("CAP_") for c in allow_cap_add or []),
        log_max_size=parse_size("--log-max-size", log_max_size),
        log_max_files=log_max_files,
        backoff=BackoffSettings(restart_delay, restart_factor, restart_max_delay, restart_reset_after),
    )
    # Imported here: the daemon pulls in the whole runtime, which no client command needs.
    daemon = importlib.import_module("agent.daemon")
    daemon.run(config)
