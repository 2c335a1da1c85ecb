"""`shoal service ...`: services on the cluster, through the controller's API (like `docker service`).

Commands that change a service wait until it converged (progress on stderr), unless --detach.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from deploy.cli.cluster import (
    ControllerOpt,
    DataFormat,
    DataOutputOpt,
    DetachOpt,
    Format,
    OutputOpt,
    QuietOpt,
    TimeoutOpt,
    control,
    set_controller,
    wait_converged,
)
from deploy.cli.common import ShoalGroup, each
from deploy.cli.health_flags import (
    HealthCmdOpt,
    HealthFlags,
    HealthIntervalOpt,
    HealthRetriesOpt,
    HealthStartPeriodOpt,
    HealthTimeoutOpt,
    NoHealthcheckOpt,
)
from deploy.cli.update_flags import (
    RollbackDelayOpt,
    RollbackFailureActionOpt,
    RollbackMaxFailureRatioOpt,
    RollbackMonitorOpt,
    RollbackOrderOpt,
    RollbackParallelismOpt,
    UpdateDelayOpt,
    UpdateFailureActionOpt,
    UpdateFlags,
    UpdateMaxFailureRatioOpt,
    UpdateMonitorOpt,
    UpdateOrderOpt,
    UpdateParallelismOpt,
)

if TYPE_CHECKING:
    from controller.api.types import NodeInfo, Service, Task
    from controller.api.views import ServiceSummary

app = typer.Typer(
    cls=ShoalGroup, help="Manage services on the cluster.", no_args_is_help=True, rich_markup_mode=None
)

# Everything after IMAGE belongs to the command: `service create busybox sh -c 'echo hi'`.
_COMMAND_CONTEXT: dict[str, Any] = {"allow_interspersed_args": False}
DEFAULT_TIMEOUT = 120.0


@app.callback()
def _group(ctx: typer.Context, controller: ControllerOpt = None) -> None:
    set_controller(ctx, controller)


# ---- the flags shared by create and update -----------------------------------------------

ListOpt = list[str]


def _opt(*names: str, metavar: str, help: str) -> Any:
    return typer.Option(*names, metavar=metavar, help=help)


ReplicasOpt = Annotated[int | None, _opt("--replicas", metavar="N", help="Tasks (job: completions).")]
MaxReplicasOpt = Annotated[int | None, _opt("--max-replicas-per-node", metavar="N", help="0: no limit.")]
ReserveMemoryOpt = Annotated[str | None, _opt("--reserve-memory", metavar="SIZE", help="e.g. 64m")]
ReserveCpuOpt = Annotated[str | None, _opt("--reserve-cpu", metavar="CPUS", help="e.g. 0.5")]
LimitMemoryOpt = Annotated[str | None, _opt("--limit-memory", metavar="SIZE", help="e.g. 128m")]
LimitCpuOpt = Annotated[str | None, _opt("--limit-cpu", metavar="CPUS", help="e.g. 1.5")]
LimitPidsOpt = Annotated[int | None, _opt("--limit-pids", metavar="N", help="Process limit.")]
RestartConditionOpt = Annotated[
    str | None, _opt("--restart-condition", metavar="COND", help="none, on-failure or any.")
]
RestartDelayOpt = Annotated[str | None, _opt("--restart-delay", metavar="DURATION", help="e.g. 5s")]
RestartMaxAttemptsOpt = Annotated[
    int | None, _opt("--restart-max-attempts", metavar="N", help="0: unlimited.")
]
RestartWindowOpt = Annotated[
    str | None, _opt("--restart-window", metavar="DURATION", help="Window for attempts.")
]
UserOpt = Annotated[str | None, _opt("--user", "-u", metavar="USER[:GROUP]", help="Run as.")]
WorkdirOpt = Annotated[str | None, _opt("--workdir", "-w", metavar="DIR", help="Working directory.")]
StopSignalOpt = Annotated[str | None, _opt("--stop-signal", metavar="SIGNAL", help="e.g. SIGINT")]
StopGraceOpt = Annotated[
    str | None, _opt("--stop-grace-period", metavar="DURATION", help="Before SIGKILL, e.g. 10s")
]


# ---- create ------------------------------------------------------------------------------


@app.command(context_settings=_COMMAND_CONTEXT)
def create(
    ctx: typer.Context,
    image: Annotated[str, typer.Argument(metavar="IMAGE", help="The image, e.g. busybox.")],
    command: Annotated[list[str] | None, typer.Argument(metavar="[COMMAND]...", help="Command.")] = None,
    name: Annotated[str | None, _opt("--name", metavar="NAME", help="Service name (required).")] = None,
    replicas: ReplicasOpt = None,
    mode: Annotated[
        str, _opt("--mode", metavar="MODE", help="replicated, global or replicated-job.")
    ] = "replicated",
    max_concurrent: Annotated[
        int | None, _opt("--max-concurrent", metavar="N", help="Job: tasks running at once.")
    ] = None,
    entrypoint: Annotated[str | None, _opt("--entrypoint", metavar="CMD", help="Override it.")] = None,
    env: Annotated[ListOpt | None, _opt("--env", "-e", metavar="KEY=VALUE", help="Environment.")] = None,
    label: Annotated[ListOpt | None, _opt("--label", "-l", metavar="KEY=VALUE", help="Label.")] = None,
    constraint: Annotated[
        ListOpt | None, _opt("--constraint", metavar="EXPR", help="e.g. node.labels.zone==a")
    ] = None,
    placement_pref: Annotated[
        ListOpt | None, _opt("--placement-pref", metavar="PREF", help="e.g. spread=node.labels.zone")
    ] = None,
    max_replicas_per_node: MaxReplicasOpt = None,
    reserve_memory: ReserveMemoryOpt = None,
    reserve_cpu: ReserveCpuOpt = None,
    limit_memory: LimitMemoryOpt = None,
    limit_cpu: LimitCpuOpt = None,
    limit_pids: LimitPidsOpt = None,
    restart_condition: RestartConditionOpt = None,
    restart_delay: RestartDelayOpt = None,
    restart_max_attempts: RestartMaxAttemptsOpt = None,
    restart_window: RestartWindowOpt = None,
    publish: Annotated[
        ListOpt | None, _opt("--publish", "-p", metavar="PUBLISHED:TARGET[/PROTO]", help="Publish a port.")
    ] = None,
    mount: Annotated[
        ListOpt | None,
        _opt("--mount", metavar="type=volume|bind,source=S,target=/T[,readonly]", help="Mount a volume."),
    ] = None,
    user: UserOpt = None,
    workdir: WorkdirOpt = None,
    stop_signal: StopSignalOpt = None,
    stop_grace_period: StopGraceOpt = None,
    health_cmd: HealthCmdOpt = None,
    health_interval: HealthIntervalOpt = None,
    health_timeout: HealthTimeoutOpt = None,
    health_retries: HealthRetriesOpt = None,
    health_start_period: HealthStartPeriodOpt = None,
    no_healthcheck: NoHealthcheckOpt = False,
    update_parallelism: UpdateParallelismOpt = None,
    update_delay: UpdateDelayOpt = None,
    update_failure_action: UpdateFailureActionOpt = None,
    update_monitor: UpdateMonitorOpt = None,
    update_max_failure_ratio: UpdateMaxFailureRatioOpt = None,
    update_order: UpdateOrderOpt = None,
    rollback_parallelism: RollbackParallelismOpt = None,
    rollback_delay: RollbackDelayOpt = None,
    rollback_failure_action: RollbackFailureActionOpt = None,
    rollback_monitor: RollbackMonitorOpt = None,
    rollback_max_failure_ratio: RollbackMaxFailureRatioOpt = None,
    rollback_order: RollbackOrderOpt = None,
    detach: DetachOpt = False,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT,
    quiet: QuietOpt = False,
) -> None:
    """Create a service and wait until its tasks run (jobs: until they completed)."""
    from agent.errors import invalid
    from deploy.cli.service_flags import SpecFlags, build_spec

    if not name:
        raise invalid("--name", "", "a service name is required")
    flags = SpecFlags(
        image=image,
        command=command or None,
        entrypoint=entrypoint,
        mode=mode,
        replicas=replicas,
        max_concurrent=max_concurrent,
        env_add=env or [],
        label_add=label or [],
        constraint_add=constraint or [],
        pref_add=placement_pref or [],
        publish_add=publish or [],
        max_replicas_per_node=max_replicas_per_node,
        reserve_memory=reserve_memory,
        reserve_cpu=reserve_cpu,
        limit_memory=limit_memory,
        limit_cpu=limit_cpu,
        limit_pids=limit_pids,
        restart_condition=restart_condition,
        restart_delay=restart_delay,
        restart_max_attempts=restart_max_attempts,
        restart_window=restart_window,
        mount_add=mount or [],
        user=user,
        workdir=workdir,
        stop_signal=stop_signal,
        stop_grace_period=stop_grace_period,
        health=HealthFlags(
            health_cmd, health_interval, health_timeout, health_retries, health_start_period, no_healthcheck
        ),
        update=UpdateFlags(
            update_parallelism,
            update_delay,
            update_failure_action,
            update_monitor,
            update_max_failure_ratio,
            update_order,
        ),
        rollback=UpdateFlags(
            rollback_parallelism,
            rollback_delay,
            rollback_failure_action,
            rollback_monitor,
            rollback_max_failure_ratio,
            rollback_order,
        ),
    )
    spec = build_spec(name, flags)
    client = control(ctx)
    service = client.create_service(spec)
    typer.echo(service.id)
    if not detach:
        wait_converged(client, service.spec.name, timeout, quiet)


# ---- update / scale ----------------------------------------------------------------------


@app.command()
def update(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(metavar="SERVICE", help="Name or id.")],
    image: Annotated[str | None, _opt("--image", metavar="IMAGE", help="New image.")] = None,
    args: Annotated[
        str | None, _opt("--args", metavar="COMMAND", help="New command (split on spaces).")
    ] = None,
    entrypoint: Annotated[str | None, _opt("--entrypoint", metavar="CMD", help="New entrypoint.")] = None,
    replicas: ReplicasOpt = None,
    env_add: Annotated[ListOpt | None, _opt("--env-add", metavar="KEY=VALUE", help="Set a variable.")] = None,
    env_rm: Annotated[ListOpt | None, _opt("--env-rm", metavar="KEY", help="Remove a variable.")] = None,
    label_add: Annotated[
        ListOpt | None, _opt("--label-add", metavar="KEY=VALUE", help="Add a label.")
    ] = None,
    label_rm: Annotated[ListOpt | None, _opt("--label-rm", metavar="KEY", help="Remove a label.")] = None,
    constraint_add: Annotated[ListOpt | None, _opt("--constraint-add", metavar="EXPR", help="Add.")] = None,
    constraint_rm: Annotated[ListOpt | None, _opt("--constraint-rm", metavar="EXPR", help="Remove.")] = None,
    placement_pref_add: Annotated[
        ListOpt | None, _opt("--placement-pref-add", metavar="PREF", help="Add.")
    ] = None,
    placement_pref_rm: Annotated[
        ListOpt | None, _opt("--placement-pref-rm", metavar="PREF", help="Remove.")
    ] = None,
    publish_add: Annotated[
        ListOpt | None, _opt("--publish-add", metavar="PUBLISHED:TARGET[/PROTO]", help="Publish a port.")
    ] = None,
    publish_rm: Annotated[
        ListOpt | None, _opt("--publish-rm", metavar="PUBLISHED[/PROTO]", help="Unpublish a port.")
    ] = None,
    max_replicas_per_node: MaxReplicasOpt = None,
    reserve_memory: ReserveMemoryOpt = None,
    reserve_cpu: ReserveCpuOpt = None,
    limit_memory: LimitMemoryOpt = None,
    limit_cpu: LimitCpuOpt = None,
    limit_pids: LimitPidsOpt = None,
    restart_condition: RestartConditionOpt = None,
    restart_delay: RestartDelayOpt = None,
    restart_max_attempts: RestartMaxAttemptsOpt = None,
    restart_window: RestartWindowOpt = None,
    mount_add: Annotated[
        ListOpt | None,
        _opt("--mount-add", metavar="type=volume|bind,source=S,target=/T[,readonly]", help="Add or replace."),
    ] = None,
    mount_rm: Annotated[
        ListOpt | None, _opt("--mount-rm", metavar="TARGET", help="Remove the mount at.")
    ] = None,
    user: UserOpt = None,
    workdir: WorkdirOpt = None,
    stop_signal: StopSignalOpt = None,
    stop_grace_period: StopGraceOpt = None,
    health_cmd: HealthCmdOpt = None,
    health_interval: HealthIntervalOpt = None,
    health_timeout: HealthTimeoutOpt = None,
    health_retries: HealthRetriesOpt = None,
    health_start_period: HealthStartPeriodOpt = None,
    no_healthcheck: NoHealthcheckOpt = False,
    update_parallelism: UpdateParallelismOpt = None,
    update_delay: UpdateDelayOpt = None,
    update_failure_action: UpdateFailureActionOpt = None,
    update_monitor: UpdateMonitorOpt = None,
    update_max_failure_ratio: UpdateMaxFailureRatioOpt = None,
    update_order: UpdateOrderOpt = None,
    rollback_parallelism: RollbackParallelismOpt = None,
    rollback_delay: RollbackDelayOpt = None,
    rollback_failure_action: RollbackFailureActionOpt = None,
    rollback_monitor: RollbackMonitorOpt = None,
    rollback_max_failure_ratio: RollbackMaxFailureRatioOpt = None,
    rollback_order: RollbackOrderOpt = None,
    detach: DetachOpt = False,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT,
    quiet: QuietOpt = False,
) -> None:
    """Change a service; tasks whose spec changed are replaced. Waits until it converged."""
    from deploy.cli.service_flags import SpecFlags, apply_flags

    flags = SpecFlags(
        image=image,
        command=args.split() if args is not None else None,
        entrypoint=entrypoint,
        replicas=replicas,
        env_add=env_add or [],
        env_rm=env_rm or [],
        label_add=label_add or [],
        label_rm=label_rm or [],
        constraint_add=constraint_add or [],
        constraint_rm=constraint_rm or [],
        pref_add=placement_pref_add or [],
        pref_rm=placement_pref_rm or [],
        publish_add=publish_add or [],
        publish_rm=publish_rm or [],
        max_replicas_per_node=max_replicas_per_node,
        reserve_memory=reserve_memory,
        reserve_cpu=reserve_cpu,
        limit_memory=limit_memory,
        limit_cpu=limit_cpu,
        limit_pids=limit_pids,
        restart_condition=restart_condition,
        restart_delay=restart_delay,
        restart_max_attempts=restart_max_attempts,
        restart_window=restart_window,
        mount_add=mount_add or [],
        mount_rm=mount_rm or [],
        user=user,
        workdir=workdir,
        stop_signal=stop_signal,
        stop_grace_period=stop_grace_period,
        health=HealthFlags(
            health_cmd, health_interval, health_timeout, health_retries, health_start_period, no_healthcheck
        ),
        update=UpdateFlags(
            update_parallelism,
            update_delay,
            update_failure_action,
            update_monitor,
            update_max_failure_ratio,
            update_order,
        ),
        rollback=UpdateFlags(
            rollback_parallelism,
            rollback_delay,
            rollback_failure_action,
            rollback_monitor,
            rollback_max_failure_ratio,
            rollback_order,
        ),
    )
    client = control(ctx)
    current = client.inspect_service(service)
    # Guarded on the version read: a concurrent change is a Conflict, not silently overwritten.
    updated = client.update_service(current.spec.name, apply_flags(current.spec, flags), current.version)
    typer.echo(updated.spec.name)
    if not detach:
        wait_converged(client, updated.spec.name, timeout, quiet)


@app.command()
def scale(
    ctx: typer.Context,
    pairs: Annotated[list[str], typer.Argument(metavar="SERVICE=REPLICAS...", help="e.g. web=5 api=2")],
    detach: DetachOpt = False,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT,
    quiet: QuietOpt = False,
) -> None:
    """Set the replicas of one or more replicated services (jobs: their completions)."""
    from agent.errors import invalid
    from deploy.cli.service_flags import SpecFlags, apply_flags

    wanted: dict[str, int] = {}
    for pair in pairs:
        name, sep, count = pair.partition("=")
        if not name or not sep or not count.isdigit():
            raise invalid("SERVICE=REPLICAS", pair, "expected a name and a whole number, e.g. web=3")
        wanted[name] = int(count)
    client = control(ctx)
    scaled: list[str] = []

    def one(ref: str) -> None:
        current = client.inspect_service(ref)
        if current.spec.mode == "global":
            raise invalid("SERVICE", ref, "a global service cannot be scaled")
        spec = apply_flags(current.spec, SpecFlags(replicas=wanted[ref]))
        client.update_service(current.spec.name, spec, current.version)
        typer.echo(f"{current.spec.name} scaled to {wanted[ref]}")
        scaled.append(current.spec.name)

    each(wanted, one)  # exits non-zero after the others when one failed, as docker
    if not detach:
        for name in scaled:
            wait_converged(client, name, timeout, quiet)


@app.command()
def rollback(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(metavar="SERVICE", help="Name or id.")],
    detach: DetachOpt = False,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT,
    quiet: QuietOpt = False,
) -> None:
    """Go back to the service's spec before its last change (again: undo the rollback)."""
    client = control(ctx)
    rolled = client.rollback_service(service)
    typer.echo(rolled.spec.name)
    if not detach:
        wait_converged(client, rolled.spec.name, timeout, quiet)


# ---- rm ----------------------------------------------------------------------------------


@app.command()
def rm(
    ctx: typer.Context,
    services: Annotated[list[str], typer.Argument(metavar="SERVICE...", help="Names or ids.")],
) -> None:
    """Remove services (their tasks are stopped and removed by the cluster)."""
    client = control(ctx)

    def one(ref: str) -> None:
        client.remove_service(ref)
        typer.echo(ref)

    each(services, one)


# ---- ls / inspect / ps -------------------------------------------------------------------


@app.command("ls")
def ls(
    ctx: typer.Context,
    quiet: QuietOpt = False,
    output: OutputOpt = Format.table,
    filter_: Annotated[
        list[str] | None, typer.Option("--filter", "-f", metavar="label=K[=V]|name=N", help="Filter.")
    ] = None,
) -> None:
    """List services."""
    from deploy.cli.output import print_structured

    summaries = sorted(control(ctx).list_services(), key=lambda s: s.service.spec.name)
    summaries = [s for s in summaries if _matches(s.service, filter_ or [])]
    if quiet:
        for s in summaries:
            typer.echo(s.service.id)
    elif output is Format.table:
        services_table(summaries)
    else:
        print_structured(summaries, output.value)


def _matches(service: Service, filters: list[str]) -> bool:
    from agent.errors import invalid

    for f in filters:
        kind, _, value = f.partition("=")
        if kind == "name":
            if not service.spec.name.startswith(value):
                return False
        elif kind == "label":
            key, sep, want = value.partition("=")
            if key not in service.spec.labels or (sep and service.spec.labels[key] != want):
                return False
        else:
            raise invalid("--filter", f, "expected name=PREFIX or label=KEY[=VALUE]")
    return True


@app.command()
def inspect(
    ctx: typer.Context,
    services: Annotated[list[str], typer.Argument(metavar="SERVICE...", help="Names or ids.")],
    output: DataOutputOpt = DataFormat.json,
) -> None:
    """Show services in full (json or yaml), as a list."""
    from agent.errors import ShoalError
    from deploy.cli.common import report
    from deploy.cli.output import print_structured

    client = control(ctx)
    found = []
    first: ShoalError | None = None
    for ref in services:
        try:
            found.append(client.inspect_service(ref))
        except ShoalError as err:
            report(err)
            first = first or err
    print_structured(found, output.value)
    if first is not None:
        raise typer.Exit(first.exit_code)


@app.command()
def ps(
    ctx: typer.Context,
    services: Annotated[list[str], typer.Argument(metavar="SERVICE...", help="Names or ids.")],
    quiet: QuietOpt = False,
    output: OutputOpt = Format.table,
    no_trunc: Annotated[bool, typer.Option("--no-trunc", help="Do not shorten ids and errors.")] = False,
) -> None:
    """List the tasks of services, history included (older tasks of a slot indented under it)."""
    from deploy.cli.output import print_structured

    client = control(ctx)
    tasks: list[Task] = []
    specs: dict[str, Service] = {}
    for ref in services:
        service = client.inspect_service(ref)
        specs[service.id] = service
        tasks.extend(client.list_tasks(service.id))
    if quiet:
        for t in tasks:
            typer.echo(t.id)
    elif output is Format.table:
        tasks_table(tasks, specs, {n.id: n for n in client.list_nodes()}, no_trunc)
    else:
        print_structured(tasks, output.value)


# ---- logs --------------------------------------------------------------------------------


@app.command()
def logs(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(metavar="SERVICE", help="Name or id.")],
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep streaming.")] = False,
    tail: Annotated[str, typer.Option("--tail", metavar="N", help="Lines from the end, or all.")] = "all",
) -> None:
    """The logs of a service's tasks on whatever nodes run them, each line prefixed by its task."""
    from deploy.cli.tasklogs import service_logs

    service_logs(control(ctx), service, follow, tail)


# ---- tables ------------------------------------------------------------------------------


def replicas_column(s: ServiceSummary) -> str:
    if s.service.spec.mode == "replicated-job":
        return f"{s.running}/{s.service.spec.max_concurrent} ({s.completed}/{s.desired} completed)"
    return f"{s.running}/{s.desired}"


def ports_column(service: Service) -> str:
    return ", ".join(f"*:{p.published}->{p.target}/{p.protocol}" for p in service.spec.ports)


def services_table(summaries: list[ServiceSummary]) -> None:
    from deploy.cli.output import print_table

    rows = [
        [
            s.service.id,
            s.service.spec.name,
            s.service.spec.mode,
            replicas_column(s),
            s.service.spec.image,
            ports_column(s.service),
        ]
        for s in summaries
    ]
    print_table(["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"], rows)


def task_image(service: Service | None, task: Task) -> str:
    """The image a task runs: tasks do not record it, but the service knows its current spec's and
    the previous one's (older tasks show none)."""
    if service is None:
        return ""
    if task.spec_version == service.task_version:
        return service.spec.image
    if service.previous_spec is not None and task.spec_version == service.previous_task_version:
        return service.previous_spec.image
    return ""


def task_rows(
    tasks: list[Task],
    services: dict[str, Service],
    nodes: dict[str, NodeInfo],
    no_trunc: bool = False,
    now: datetime | None = None,
) -> list[list[str]]:
    """Docker's `service ps`: per slot (per node for global tasks) the newest task first, older
    ones below it as history (`\\_ name`)."""
    from deploy.cli.output import ago, ellipsis

    now = now or datetime.now(UTC)
    # Nodes sharing a hostname (several agents on one machine, as in the lab) are told apart by id.
    shared = {h for h, n in Counter(node.hostname for node in nodes.values()).items() if n > 1}
    groups: dict[tuple[str, str, int, str], list[Task]] = {}
    for t in tasks:
        key = (t.service_name, t.service_id, t.slot, "" if t.slot else t.node_id)
        groups.setdefault(key, []).append(t)
    rows = []
    for key in sorted(groups):
        history = sorted(groups[key], key=lambda t: (t.created_at, t.id), reverse=True)
        for i, t in enumerate(history):
            service = services.get(t.service_id)
            node = nodes.get(t.node_id)
            name = f"{t.service_name}.{t.slot or t.node_id}"
            state = t.state.capitalize()
            when = ago(t.updated_at or t.created_at, now)
            error = "" if t.state == "running" else t.message
            if t.state == "running" and t.health:
                when += " (health: starting)" if t.health == "starting" else f" ({t.health})"
            rows.append(
                [
                    t.id,
                    name if i == 0 else f" \\_ {name}",
                    task_image(service, t),
                    (node.hostname if node and node.hostname not in shared else t.node_id) or "",
                    t.address if t.state == "running" else "",
                    t.desired_state.capitalize(),
                    f"{state} {when}".strip(),
                    error if no_trunc else ellipsis(error, 60),
                    str(t.restarts),
                    ports_column(service) if service and t.state == "running" else "",
                ]
            )
    return rows


def tasks_table(
    tasks: list[Task], services: dict[str, Service], nodes: dict[str, NodeInfo], no_trunc: bool
) -> None:
    from deploy.cli.output import print_table

    headers = ["ID", "NAME", "IMAGE", "NODE", "ADDRESS", "DESIRED STATE", "CURRENT STATE", "ERROR"]
    headers += ["RESTARTS", "PORTS"]
    print_table(headers, task_rows(tasks, services, nodes, no_trunc))
