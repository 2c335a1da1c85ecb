"""`shoal stack ...`: Compose files deployed as groups of services (like `docker stack`).

A stack's services are named `<stack>_<service>` and labelled `com.docker.stack.namespace=<stack>`.
Deploy checks the whole file first (nothing is written when anything is invalid), then creates
what is new, updates only what changed, and removes the stack's services no longer in the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from deploy.cli.cluster import (
    ControllerOpt,
    DetachOpt,
    Format,
    OutputOpt,
    QuietOpt,
    TimeoutOpt,
    control,
    set_controller,
    wait_converged,
)
from deploy.cli.common import ShoalGroup
from deploy.compose import NAMESPACE_LABEL

if TYPE_CHECKING:
    from controller.api.types import Service, ServiceSpec
    from controller.api.views import ServiceSummary

app = typer.Typer(
    cls=ShoalGroup,
    help="Deploy Compose files as stacks of services.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


StackArg = Annotated[str, typer.Argument(metavar="STACK", help="The stack's name.")]


@app.callback()
def _group(ctx: typer.Context, controller: ControllerOpt = None) -> None:
    set_controller(ctx, controller)


def stack_of(service: Service) -> str | None:
    return service.spec.labels.get(NAMESPACE_LABEL)


def plan_deploy(
    stack: str, specs: list[ServiceSpec], existing: list[Service]
) -> tuple[list[ServiceSpec], list[tuple[Service, ServiceSpec]], list[Service]]:
    """(to create, to update, to remove). Pure. A name taken by a service outside the stack is a
    Conflict, found before anything is written."""
    from agent.errors import Conflict

    by_name = {s.spec.name: s for s in existing}
    create, update = [], []
    for spec in specs:
        current = by_name.get(spec.name)
        if current is None:
            create.append(spec)
        elif stack_of(current) != stack:
            raise Conflict(f"service {spec.name} already exists and is not part of stack {stack}")
        elif current.spec != spec:
            update.append((current, spec))
    wanted = {s.name for s in specs}
    remove = [s for s in existing if stack_of(s) == stack and s.spec.name not in wanted]
    return create, update, remove


@app.command()
def deploy(
    ctx: typer.Context,
    stack: StackArg,
    compose_file: Annotated[
        Path, typer.Option("-c", "--compose-file", metavar="FILE", help="The Compose file.")
    ] = Path("compose.yml"),
    prune: Annotated[
        bool, typer.Option("--prune/--no-prune", help="Remove services not in the file.")
    ] = True,
    detach: DetachOpt = False,
    timeout: TimeoutOpt = 300.0,
    quiet: QuietOpt = False,
) -> None:
    """Create or update a stack from a Compose file; waits until its services converged."""
    from deploy.compose.to_specs import load_stack

    loaded = load_stack(compose_file, stack, os.environ)
    for warning in loaded.warnings():
        typer.echo(f"Warning: {warning}", err=True)
    client = control(ctx)
    existing = [s.service for s in client.list_services()]
    create, update, remove = plan_deploy(stack, loaded.specs, existing)
    changed = []
    for spec in create:
        typer.echo(f"Creating service {spec.name}")
        client.create_service(spec)
        changed.append(spec.name)
    for current, spec in update:
        typer.echo(f"Updating service {spec.name}")
        client.update_service(spec.name, spec, current.version)
        changed.append(spec.name)
    if prune:
        for service in remove:
            typer.echo(f"Removing service {service.spec.name}")
            client.remove_service(service.spec.name)
    if not detach:
        for name in changed:
            wait_converged(client, name, timeout, quiet)


def _stack_services(summaries: list[ServiceSummary], stack: str) -> list[ServiceSummary]:
    return sorted((s for s in summaries if stack_of(s.service) == stack), key=lambda s: s.service.spec.name)


@app.command("ls")
def ls(ctx: typer.Context, output: OutputOpt = Format.table) -> None:
    """List stacks and how many services each has."""
    from deploy.cli.output import print_table

    counts: dict[str, int] = {}
    for s in control(ctx).list_services():
        name = stack_of(s.service)
        if name:
            counts[name] = counts.get(name, 0) + 1
    if output is Format.table:
        print_table(["NAME", "SERVICES"], [[n, str(c)] for n, c in sorted(counts.items())])
    else:
        from deploy.cli.output import print_structured
        from deploy.cli.views import StackSummary

        print_structured([StackSummary(name=n, services=c) for n, c in sorted(counts.items())], output.value)


@app.command()
def services(
    ctx: typer.Context, stack: StackArg, quiet: QuietOpt = False, output: OutputOpt = Format.table
) -> None:
    """List a stack's services."""
    from deploy.cli.output import print_structured
    from deploy.cli.service import services_table

    found = _stack_services(control(ctx).list_services(), stack)
    _require(found, stack)
    if quiet:
        for s in found:
            typer.echo(s.service.id)
    elif output is Format.table:
        services_table(found)
    else:
        print_structured(found, output.value)


@app.command()
def ps(
    ctx: typer.Context,
    stack: StackArg,
    quiet: QuietOpt = False,
    output: OutputOpt = Format.table,
    no_trunc: Annotated[bool, typer.Option("--no-trunc", help="Do not shorten errors.")] = False,
) -> None:
    """List the tasks of a stack's services, history included."""
    from controller.api.types import Task
    from deploy.cli.output import print_structured
    from deploy.cli.service import tasks_table

    client = control(ctx)
    found = _stack_services(client.list_services(), stack)
    _require(found, stack)
    tasks: list[Task] = []
    for s in found:
        tasks.extend(client.list_tasks(s.service.id))
    if quiet:
        for t in tasks:
            typer.echo(t.id)
    elif output is Format.table:
        services_by_id = {s.service.id: s.service for s in found}
        tasks_table(tasks, services_by_id, {n.id: n for n in client.list_nodes()}, no_trunc)
    else:
        print_structured(tasks, output.value)


@app.command()
def rm(ctx: typer.Context, stacks: Annotated[list[str], typer.Argument(metavar="STACK...")]) -> None:
    """Remove stacks: all their services."""
    client = control(ctx)
    summaries = client.list_services()
    missing = [name for name in stacks if not _stack_services(summaries, name)]
    for name in stacks:
        for s in _stack_services(summaries, name):
            typer.echo(f"Removing service {s.service.spec.name}")
            client.remove_service(s.service.spec.name)
    if missing:
        from agent.errors import NotFound

        raise NotFound(f"stack {missing[0]} not found (no service has {NAMESPACE_LABEL}={missing[0]})")


def _require(found: list[ServiceSummary], stack: str) -> None:
    if not found:
        from agent.errors import NotFound

        raise NotFound(f"stack {stack} not found (no service has {NAMESPACE_LABEL}={stack})")
