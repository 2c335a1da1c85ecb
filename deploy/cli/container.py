"""`shoal container ...`: Docker's container commands against the node's agent.

Every flag value is parsed and validated here, with the same parsers the agent uses,
before the agent is contacted: bad input fails fast (exit 3) even with no agent running.
"""

from __future__ import annotations

import inspect
import os
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from agent.errors import ShoalError, invalid
from deploy.cli.common import check_workdir, client, each, parse_since, parse_tail, write
from deploy.cli.health_flags import (
    HealthCmdOpt,
    HealthFlags,
    HealthIntervalOpt,
    HealthRetriesOpt,
    HealthStartPeriodOpt,
    HealthTimeoutOpt,
    NoHealthcheckOpt,
    apply_health_flags,
)

if TYPE_CHECKING:
    from agent.models import ContainerCreate, MountSpec

app = typer.Typer(help="Manage containers.", no_args_is_help=True)

# Everything after IMAGE (or CONTAINER for exec) belongs to the container's command,
# including words that look like options: `run busybox sh -c 'echo hi'`.
COMMAND_CONTEXT: dict[str, Any] = {"allow_interspersed_args": False}


class Output(StrEnum):
    table = "table"
    json = "json"


class JsonOutput(StrEnum):
    json = "json"


OutputOpt = Annotated[
    Output, typer.Option("-o", "--output", metavar="FORMAT", help="table or json (the API's models).")
]


# ---- run / create ------------------------------------------------------------------------


def _host_env(item: str) -> str:
    """Docker's `-e KEY`: take KEY's value from this shell when it is set."""
    if "=" not in item and item in os.environ:
        return f"{item}={os.environ[item]}"
    return item


def read_env_file(path: str) -> list[str]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise invalid("--env-file", path, f"cannot read it: {exc.strerror or exc}") from None
    items = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            items.append(_host_env(line))
    return items


def parse_mount(text: str) -> MountSpec:
    """`--mount type=bind,source=/a,target=/b,readonly` (Docker's keys and aliases)."""
    from agent.models import MountSpec, validate_container_path, validate_host_path, validate_name

    kind, source, target, read_only = "volume", "", "", False
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if key == "type":
            if value not in ("volume", "bind", "tmpfs"):
                raise invalid("--mount", text, "type must be volume, bind or tmpfs")
            kind = value
        elif key in ("source", "src"):
            source = value
        elif key in ("target", "destination", "dst"):
            target = value
        elif key in ("readonly", "ro"):
            if sep and value.lower() not in ("true", "1", "false", "0"):
                raise invalid("--mount", text, "readonly takes true or false")
            read_only = not sep or value.lower() in ("true", "1")
        else:
            raise invalid("--mount", text, f"unknown key {key!r}: use type, source, target and readonly")
    if not target:
        raise invalid("--mount", text, "a target is required")
    validate_container_path("--mount", target)
    if kind == "bind":
        if not source:
            raise invalid("--mount", text, "a bind mount needs a source")
        validate_host_path("--mount", source)
    elif kind == "volume":
        if not source:
            raise invalid("--mount", text, "a volume mount needs a source (the volume name)")
        validate_name("--mount", source)
    elif source:
        raise invalid("--mount", text, "a tmpfs mount takes no source")
    return MountSpec(type=kind, source=source, target=target, read_only=read_only)


def parse_volume_flag(text: str) -> MountSpec:
    from agent.models import parse_volume

    source = text.split(":", 1)[0]
    # `./data:/x` or `data/x:/x` is a relative host path, not a volume name: say so.
    if not source.startswith("/") and ("/" in source or source.startswith(".")):
        raise invalid("-v", text, "the host path must be absolute (a plain name is a named volume)")
    return parse_volume(text)


def build_request(
    image: str,
    command: list[str] | None,
    name: str | None,
    env: list[str] | None,
    env_file: list[str] | None,
    volume: list[str] | None,
    tmpfs: list[str] | None,
    mount: list[str] | None,
    restart: str | None,
    memory: str | None,
    cpus: str | None,
    pids_limit: str | None,
    network: str,
    entrypoint: str | None,
    workdir: str | None,
    user: str | None,
    hostname: str | None,
    stop_signal: str | None,
    stop_timeout: float | None,
    label: list[str] | None,
    privileged: bool,
    cap_add: list[str] | None,
    publish: list[str] | None = None,
    health: HealthFlags | None = None,
) -> ContainerCreate:
    """Flags -> the API's request, validated exactly as the agent will (minus its policy)."""
    from agent.models import (
        ContainerCreate,
        HealthCheck,
        Resources,
        RestartPolicy,
        parse_cpus,
        parse_env,
        parse_memory,
        parse_pids_limit,
        parse_restart,
        parse_tmpfs,
        validate_create,
    )

    if network not in ("default", "none", "host", "bridge"):
        raise invalid("--network", network, "expected default, bridge, none or host")
    check_workdir("--workdir", workdir)
    env_items = [item for path in env_file or [] for item in read_env_file(path)]
    env_items += [_host_env(item) for item in env or []]
    labels: dict[str, str] = {}
    for item in label or []:
        key, _, value = item.partition("=")
        if not key:
            raise invalid("--label", item, "expected KEY=value")
        labels[key] = value
    mounts = [parse_volume_flag(v) for v in volume or []]
    mounts += [parse_tmpfs(t) for t in tmpfs or []]
    mounts += [parse_mount(m) for m in mount or []]
    healthcheck = apply_health_flags(None, health or HealthFlags())
    req = ContainerCreate(
        image=image,
        name=name,
        command=command or None,
        entrypoint=None if entrypoint is None else ([entrypoint] if entrypoint else []),
        env=parse_env(env_items),
        working_dir=workdir,
        user=user,
        hostname=hostname,
        mounts=mounts,
        restart=parse_restart(restart) if restart is not None else RestartPolicy(),
        resources=Resources(
            memory_bytes=parse_memory(memory) if memory is not None else None,
            nano_cpus=parse_cpus(cpus) if cpus is not None else None,
            pids_limit=parse_pids_limit(pids_limit) if pids_limit is not None else None,
        ),
        network=network,
        publish=publish or [],
        stop_signal=stop_signal,
        stop_timeout=stop_timeout,
        labels=labels,
        privileged=privileged,
        cap_add=cap_add or [],
        healthcheck=None if healthcheck is None else HealthCheck.model_validate(healthcheck),
    )
    validate_create(req)
    return req


@app.command("run", context_settings=COMMAND_CONTEXT)
def run(
    ctx: typer.Context,
    image: Annotated[str, typer.Argument(metavar="IMAGE", help="Image reference, pulled if missing.")],
    command: Annotated[
        list[str] | None,
        typer.Argument(metavar="COMMAND", help="Command and arguments (replace the image's Cmd)."),
    ] = None,
    detach: Annotated[
        bool, typer.Option("-d", "--detach", help="Run in the background and print the id.")
    ] = False,
    name: Annotated[str | None, typer.Option("--name", metavar="NAME", help="Container name.")] = None,
    env: Annotated[
        list[str] | None, typer.Option("-e", "--env", metavar="KEY=VALUE", help="KEY=VALUE (repeatable).")
    ] = None,
    env_file: Annotated[
        list[str] | None, typer.Option("--env-file", metavar="FILE", help="File of KEY=VALUE lines.")
    ] = None,
    volume: Annotated[
        list[str] | None,
        typer.Option("-v", "--volume", metavar="SRC:DST[:ro]", help="NAME:/path[:ro] or /host:/path[:ro]."),
    ] = None,
    tmpfs: Annotated[
        list[str] | None, typer.Option("--tmpfs", metavar="PATH", help="Mount a tmpfs at PATH.")
    ] = None,
    mount: Annotated[
        list[str] | None,
        typer.Option("--mount", metavar="SPEC", help="type=volume|bind|tmpfs,source=..,target=..[,readonly]"),
    ] = None,
    restart: Annotated[
        str | None,
        typer.Option("--restart", metavar="POLICY", help="no, always, on-failure[:N] or unless-stopped."),
    ] = None,
    memory: Annotated[
        str | None, typer.Option("-m", "--memory", metavar="BYTES", help="Memory limit, e.g. 512m.")
    ] = None,
    cpus: Annotated[str | None, typer.Option("--cpus", metavar="CPUS", help="CPU limit, e.g. 1.5.")] = None,
    pids_limit: Annotated[
        str | None, typer.Option("--pids-limit", metavar="N", help="Maximum number of processes.")
    ] = None,
    network: Annotated[
        str,
        typer.Option(
            "--network",
            metavar="MODE",
            help="default (the node's bridge network if it has one, else none), bridge, none or host.",
        ),
    ] = "default",
    publish: Annotated[
        list[str] | None,
        typer.Option(
            "-p", "--publish", metavar="HOST:CONTAINER[/udp]", help="Publish a port on the node (repeatable)."
        ),
    ] = None,
    entrypoint: Annotated[
        str | None, typer.Option("--entrypoint", metavar="CMD", help="Replace the image's entrypoint.")
    ] = None,
    workdir: Annotated[
        str | None, typer.Option("-w", "--workdir", metavar="DIR", help="Working directory.")
    ] = None,
    user: Annotated[
        str | None, typer.Option("-u", "--user", metavar="USER", help="USER[:GROUP] or UID[:GID].")
    ] = None,
    hostname: Annotated[
        str | None, typer.Option("--hostname", metavar="NAME", help="Container host name.")
    ] = None,
    stop_signal: Annotated[
        str | None, typer.Option("--stop-signal", metavar="SIGNAL", help="Signal that stops it.")
    ] = None,
    stop_timeout: Annotated[
        float | None,
        typer.Option("--stop-timeout", metavar="SECONDS", help="Seconds before SIGKILL on stop."),
    ] = None,
    label: Annotated[
        list[str] | None, typer.Option("-l", "--label", metavar="KEY=VALUE", help="KEY=VALUE (repeatable).")
    ] = None,
    privileged: Annotated[bool, typer.Option("--privileged", help="All capabilities, no seccomp.")] = False,
    cap_add: Annotated[
        list[str] | None, typer.Option("--cap-add", metavar="CAP", help="Add a Linux capability.")
    ] = None,
    health_cmd: HealthCmdOpt = None,
    health_interval: HealthIntervalOpt = None,
    health_timeout: HealthTimeoutOpt = None,
    health_retries: HealthRetriesOpt = None,
    health_start_period: HealthStartPeriodOpt = None,
    no_healthcheck: NoHealthcheckOpt = False,
) -> None:
    """Create and start a container; without -d, stream its output and exit with its code.

    Ctrl-C detaches: the container keeps running (see `shoal container stop`).
    """
    req = build_request(
        image, command, name, env, env_file, volume, tmpfs, mount, restart, memory, cpus, pids_limit,
        network, entrypoint, workdir, user, hostname, stop_signal, stop_timeout, label, privileged, cap_add,
        publish,
        HealthFlags(
            health_cmd, health_interval, health_timeout, health_retries, health_start_period, no_healthcheck
        ),
    )  # fmt: skip
    start = ctx.info_name != "create"
    agent = client(ctx)
    info = agent.container_run(req, start=start)
    if detach or not start:
        typer.echo(info.id)
        return
    for entry in agent.container_logs(info.id, tail=None, since=None, follow=True):
        write(entry.stream, entry.line)
    raise typer.Exit(agent.container_inspect(info.id).state.exit_code)


def create(**kwargs: Any) -> None:
    """Create a container without starting it; prints its id."""
    run(detach=True, **kwargs)


# `create` takes run's flags minus -d; sharing the signature keeps the two from drifting.
_run_signature = inspect.signature(run, eval_str=True)
create.__signature__ = _run_signature.replace(  # type: ignore[attr-defined]
    parameters=[p for p in _run_signature.parameters.values() if p.name != "detach"]
)
create.__annotations__ = {k: v for k, v in run.__annotations__.items() if k != "detach"}
app.command("create", context_settings=COMMAND_CONTEXT)(create)


# ---- lifecycle ---------------------------------------------------------------------------


@app.command("start")
def start(
    ctx: typer.Context,
    containers: Annotated[list[str], typer.Argument(metavar="CONTAINER", help="Names or ids.")],
) -> None:
    """Start stopped containers."""
    agent = client(ctx)

    def one(ref: str) -> None:
        agent.container_start(ref)
        typer.echo(ref)

    each(containers, one)


@app.command("stop")
def stop(
    ctx: typer.Context,
    containers: Annotated[list[str], typer.Argument(metavar="CONTAINER", help="Names or ids.")],
    timeout: Annotated[
        float | None,
        typer.Option("-t", "--timeout", "--time", metavar="SECONDS", help="Seconds before SIGKILL."),
    ] = None,
) -> None:
    """Stop containers: the stop signal, then SIGKILL after the timeout."""
    if timeout is not None and timeout < 0:
        raise invalid("--timeout", timeout, "must not be negative")
    agent = client(ctx)

    def one(ref: str) -> None:
        agent.container_stop(ref, timeout)
        typer.echo(ref)

    each(containers, one)


@app.command("kill")
def kill(
    ctx: typer.Context,
    containers: Annotated[list[str], typer.Argument(metavar="CONTAINER", help="Names or ids.")],
    signal: Annotated[
        str, typer.Option("-s", "--signal", metavar="SIGNAL", help="Signal name or number.")
    ] = "KILL",
) -> None:
    """Send a signal to containers (SIGKILL by default)."""
    from agent.models import parse_signal

    parse_signal("--signal", signal)
    agent = client(ctx)

    def one(ref: str) -> None:
        agent.container_kill(ref, signal)
        typer.echo(ref)

    each(containers, one)


@app.command("rm")
def rm(
    ctx: typer.Context,
    containers: Annotated[list[str], typer.Argument(metavar="CONTAINER", help="Names or ids.")],
    force: Annotated[bool, typer.Option("-f", "--force", help="Kill running containers first.")] = False,
) -> None:
    """Remove containers."""
    agent = client(ctx)

    def one(ref: str) -> None:
        agent.container_remove(ref, force)
        typer.echo(ref)

    each(containers, one)


# ---- looking at containers ---------------------------------------------------------------


@app.command("ps")
def ps(
    ctx: typer.Context,
    all: Annotated[bool, typer.Option("-a", "--all", help="Include stopped containers.")] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Only ids.")] = False,
    no_trunc: Annotated[bool, typer.Option("--no-trunc", help="Full ids and commands.")] = False,
    output: OutputOpt = Output.table,
) -> None:
    """List containers (running ones unless -a)."""
    from deploy.cli.output import containers_table, print_json, short_id

    containers = client(ctx).container_list(all=all)
    if quiet:
        for c in sorted(containers, key=lambda c: c.created, reverse=True):
            typer.echo(c.id if no_trunc else short_id(c.id))
    elif output is Output.json:
        print_json(containers)
    else:
        containers_table(containers, no_trunc)


@app.command("logs")
def logs(
    ctx: typer.Context,
    container: Annotated[str, typer.Argument(metavar="CONTAINER", help="Name or id.")],
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep streaming until it stops.")] = False,
    tail: Annotated[
        str, typer.Option("-n", "--tail", metavar="N|all", help="Lines from the end, or all.")
    ] = "all",
    since: Annotated[
        str | None,
        typer.Option("--since", metavar="WHEN", help="10m, 1h30m, an RFC 3339 time or a unix timestamp."),
    ] = None,
    timestamps: Annotated[
        bool, typer.Option("-t", "--timestamps", help="Prefix each line with its time.")
    ] = False,
) -> None:
    """Print a container's output: its stdout to stdout, its stderr to stderr."""
    lines = parse_tail(tail)
    start = parse_since(since) if since is not None else None
    for entry in client(ctx).container_logs(container, tail=lines, since=start, follow=follow):
        write(entry.stream, f"{entry.time} {entry.line}" if timestamps else entry.line)


@app.command("exec", context_settings=COMMAND_CONTEXT)
def exec_(
    ctx: typer.Context,
    container: Annotated[str, typer.Argument(metavar="CONTAINER", help="Name or id.")],
    command: Annotated[list[str], typer.Argument(metavar="COMMAND", help="Command and arguments.")],
    env: Annotated[
        list[str] | None, typer.Option("-e", "--env", metavar="KEY=VALUE", help="KEY=VALUE (repeatable).")
    ] = None,
    workdir: Annotated[
        str | None, typer.Option("-w", "--workdir", metavar="DIR", help="Working directory.")
    ] = None,
    user: Annotated[
        str | None, typer.Option("-u", "--user", metavar="USER", help="USER[:GROUP] or UID[:GID].")
    ] = None,
) -> None:
    """Run a command in a running container; exits with the command's exit code."""
    from agent.models import parse_env

    env_items = parse_env([_host_env(item) for item in env or []])
    check_workdir("--workdir", workdir)
    for chunk in client(ctx).container_exec(container, command, env_items, workdir, user):
        if chunk.stream == "exit":
            raise typer.Exit(chunk.exit_code or 0)
        write(chunk.stream, chunk.data)
    raise ShoalError(f"exec in {container} ended without an exit status")


@app.command("inspect")
def inspect_(
    ctx: typer.Context,
    container: Annotated[str, typer.Argument(metavar="CONTAINER", help="Name or id.")],
    output: Annotated[
        JsonOutput, typer.Option("-o", "--output", metavar="FORMAT", help="json (the only format).")
    ] = JsonOutput.json,
) -> None:
    """Print a container's full record as JSON."""
    from deploy.cli.output import print_json

    print_json(client(ctx).container_inspect(container))


@app.command("stats")
def stats(
    ctx: typer.Context,
    containers: Annotated[
        list[str] | None, typer.Argument(metavar="CONTAINER", help="Names or ids (default: all running).")
    ] = None,
    no_stream: Annotated[
        bool,
        typer.Option(
            "--no-stream", help="Accepted for docker compatibility: one snapshot is always printed."
        ),
    ] = True,
    output: OutputOpt = Output.table,
) -> None:
    """One snapshot of resource usage (never a live view: --no-stream is the behaviour)."""
    from agent.models import ContainerStats
    from deploy.cli.output import human_bytes, print_json, print_table, short_id

    agent = client(ctx)
    snapshot: list[ContainerStats] = []
    if containers:
        snapshot = [agent.container_stats(ref) for ref in containers]
    else:
        for c in agent.container_list(all=False):
            try:
                snapshot.append(agent.container_stats(c.id))
            except ShoalError:
                continue  # it stopped between the list and the read
    if output is Output.json:
        print_json(snapshot)
        return
    rows = []
    for s in snapshot:
        limit = s.memory_limit_bytes
        mem_pct = f"{100 * s.memory_working_set_bytes / limit:.2f}%" if limit else "--"
        usage = f"{human_bytes(s.memory_working_set_bytes)} / {human_bytes(limit) if limit else 'unlimited'}"
        rows.append([short_id(s.id), s.name, f"{s.cpu_seconds:.2f}s", usage, mem_pct, str(s.pids)])
    print_table(["CONTAINER ID", "NAME", "CPU TIME", "MEM USAGE / LIMIT", "MEM %", "PIDS"], rows)


@app.command("top")
def top(
    ctx: typer.Context,
    container: Annotated[str, typer.Argument(metavar="CONTAINER", help="Name or id.")],
    output: OutputOpt = Output.table,
) -> None:
    """List a container's processes (host pids)."""
    from deploy.cli.output import print_json, print_table

    processes = client(ctx).container_top(container)
    if output is Output.json:
        print_json(processes)
    else:
        print_table(["PID", "USER", "COMMAND"], [[str(p.pid), p.user, p.command] for p in processes])


@app.command("diff")
def diff(
    ctx: typer.Context, container: Annotated[str, typer.Argument(metavar="CONTAINER", help="Name or id.")]
) -> None:
    """Files changed in a container's filesystem: A added, C changed, D deleted."""
    for change in client(ctx).container_diff(container):
        typer.echo(f"{change.kind} {change.path}")


@app.command("commit")
def commit(
    ctx: typer.Context,
    container: Annotated[str, typer.Argument(metavar="CONTAINER", help="Name or id.")],
    repo_tag: Annotated[str | None, typer.Argument(metavar="REPO[:TAG]", help="Name for the image.")] = None,
) -> None:
    """Make an image from a container's changes; prints the image id."""
    typer.echo(client(ctx).container_commit(container, repo_tag).id)
